"""Teacher memory for FSDG (stage 1): memory rows, streaming k-means and the saved centroid artifact."""

from fsdkit.feature_rows import POOLINGS, feature_rows
from fsdkit.memory.artifact import TeacherMemory
from fsdkit.memory.build import build_teacher_memory
from fsdkit.memory.kmeans import Collective, KMeansResult, TorchDistributed, assign, kmeans, shard_bounds

__all__ = [
    "Collective",
    "TorchDistributed",
    "shard_bounds",
    "POOLINGS",
    "KMeansResult",
    "TeacherMemory",
    "assign",
    "build_teacher_memory",
    "feature_rows",
    "kmeans",
]
