"""Teacher memory for FSDG (stage 1): memory rows, streaming k-means and the saved centroid artifact."""

from fsdkit.memory.artifact import TeacherMemory
from fsdkit.memory.build import build_teacher_memory
from fsdkit.memory.kmeans import KMeansResult, assign, kmeans
from fsdkit.memory.rows import POOLINGS, feature_rows

__all__ = [
    "POOLINGS",
    "KMeansResult",
    "TeacherMemory",
    "assign",
    "build_teacher_memory",
    "feature_rows",
    "kmeans",
]
