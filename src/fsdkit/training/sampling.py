"""Length-grouped training batches whose order depends on the seed and the epoch only.

transformers' ``LengthGroupedSampler`` (``--group-by-length``: batches of similar length, megabatches sorted by
length) draws each epoch's order from the global torch RNG at the moment the epoch starts. That state is not the
same in a run and in the same run resumed inside an epoch (transformers restores the RNG only after the resumed
epoch's first batch), so the resumed run would skip other batches than the ones it had trained on and go on with
another order; nor is it the same in every process of a multi-process run once the main process has evaluated.
:class:`EpochSeededLengthGroupedSampler` draws epoch ``e``'s order from its own generator seeded with
``seed + e``, as accelerate's ``SeedableRandomSampler`` does for random batches (the Trainer calls ``set_epoch``
before every epoch).
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped sampler with epoch ``e``'s order drawn from a generator seeded ``seed + e``."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()
