"""Datasets: which clips there are, their labels, and which train and which validate.

Two kinds:

* ``folder`` (`actionrec.datasets.folder`): ``root/<class>/<video files>``, one folder per class,
  split by list files when the root has them, else by a seeded, group-aware hash.
* ``ucf101`` (`actionrec.datasets.ucf101`): the official UCF101 release and its three official
  splits; `actionrec.datasets.download` fetches it.

`actionrec.datasets.synth` generates a synthetic dataset of the folder kind.
"""

from __future__ import annotations

import os
from typing import Literal, get_args

from actionrec.datasets import folder, ucf101
from actionrec.datasets.base import DATASET_LIMITS, DatasetSplit, Sample, clip_group, evenly, is_video_file
from actionrec.errors import DatasetError

DatasetKind = Literal["folder", "ucf101"]
DATASET_KINDS: tuple[DatasetKind, ...] = get_args(DatasetKind)


def load_dataset(
    root: str | os.PathLike,
    *,
    kind: DatasetKind = "folder",
    split: int = 1,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> DatasetSplit:
    """List a dataset's classes and clips and split them into training and validation.

    kind: "folder" (folder per class, see the module docstring) or "ucf101" (official split
        number `split`, 1 to 3).
    val_fraction, seed: for folder datasets without list files, the share of each class's groups
        held out for validation and the seed of the hash that picks them.
    """
    if kind == "ucf101":
        return ucf101.load_split(root, split)
    if kind != "folder":
        raise DatasetError(f"unknown dataset kind {kind!r}: use 'folder' or 'ucf101'.")
    return folder.load_folder_dataset(root, split=split, val_fraction=val_fraction, seed=seed)


__all__ = ["DATASET_KINDS", "DATASET_LIMITS", "DatasetError", "DatasetSplit", "Sample", "clip_group", "evenly",
           "is_video_file", "load_dataset"]
