"""Batches for training and validation, streamed: from the per-clip cache files, or decoded afresh
each epoch. A process holds a few batches at a time whatever the number of clips, and loader
worker processes read (or decode) the next batches while the current one trains.

An epoch's order and each clip's view are drawn in the main process from the run's generator,
so they are the same on every rank of a distributed run and after a resume. Each global batch is
split among the ranks (every `world`-th clip), and each rank weighs its share by the global batch
size, so the gradients DDP averages are those of one process training on the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from actionrec.datasets import Sample
from actionrec.training.cache import ClipCache
from actionrec.training.views import EpochView


class CachedViews(Dataset):
    """(array, label) for a key (clip index, view): one view of the clip's cached array, read from
    its file when asked (`view` None: all its views, for validation)."""

    def __init__(self, cache: ClipCache, samples: list[Sample]) -> None:
        self.files = [cache.path_for(sample.path) for sample in samples]
        self.labels = [sample.label for sample in samples]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int | None]) -> tuple[torch.Tensor, int]:
        index, view = key
        array = np.load(self.files[index], mmap_mode="r")
        return torch.from_numpy(np.array(array if view is None else array[view])), self.labels[index]


class FreshViews(Dataset):
    """(frames, label) for a key (clip index, epoch): a random view decoded now (--decode-on-the-fly)."""

    def __init__(self, samples: list[Sample], decode: EpochView) -> None:
        self.samples, self.decode = samples, decode

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, epoch = key
        sample = self.samples[index]
        return torch.from_numpy(self.decode(sample.path, epoch)), sample.label


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1


def epoch_batches(keys: list[tuple], batch_size: int, shard: Shard) -> list[tuple[list[tuple], int]]:
    """This rank's part of each global batch of `keys` (in order), with the global batch's size.
    A rank whose part would be empty gets the batch's first key, to be weighed 0."""
    batches = []
    for start in range(0, len(keys), batch_size):
        batch = keys[start : start + batch_size]
        part = batch[shard.rank :: shard.world]
        batches.append((part or batch[:1], len(batch) if part else 0))
    return batches


PREFETCH_BATCHES = 2  # read ahead by each loader worker


def loader(dataset: Dataset, batches: list[list[tuple]], workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=False, prefetch_factor=PREFETCH_BATCHES if workers else None)


def training_keys(length: int, views: int, epoch: int, generator: torch.Generator,
                  on_the_fly: bool) -> list[tuple[int, int]]:
    """This epoch's order of clips, each with the view it trains on (its epoch, decoding afresh)."""
    order = torch.randperm(length, generator=generator).tolist()
    choice = torch.randint(views, (length,), generator=generator).tolist()
    return [(index, epoch if on_the_fly else choice[index]) for index in order]


def validation_batches(length: int, batch_size: int, shard: Shard) -> list[list[tuple[int, None]]]:
    """Every validation clip once, all its views, split among the ranks."""
    mine = list(range(shard.rank, length, shard.world))
    return [[(index, None) for index in mine[start : start + batch_size]]
            for start in range(0, len(mine), batch_size)] if mine else []


def shift_clips(frames: torch.Tensor, clips: list[int], seed: int, epoch: int, share: float) -> torch.Tensor:
    """Each clip of a (B, T, H, W, 3) batch moved by up to `share` of its size, all its frames
    alike, edges repeated: a fresh offset per clip and epoch, drawn from (seed, epoch, clip) so that
    it does not depend on the batch, the rank or a resume. Runs where the batch is (the GPU)."""
    height, width = frames.shape[2], frames.shape[3]
    moved = torch.empty_like(frames)
    for row, clip in enumerate(clips):
        reach_y, reach_x = int(height * share), int(width * share)
        dy, dx = np.random.default_rng([seed, epoch, clip]).integers([-reach_y, -reach_x], [reach_y + 1, reach_x + 1])
        rows = (torch.arange(height, device=frames.device) + int(dy)).clamp(0, height - 1)
        cols = (torch.arange(width, device=frames.device) + int(dx)).clamp(0, width - 1)
        moved[row] = frames[row][:, rows][:, :, cols]
    return moved


def steps_per_epoch(length: int, batch_size: int) -> int:
    return math.ceil(length / batch_size)
