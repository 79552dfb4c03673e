"""How stages that run at once share the cores (actionrec.runtime.cores)."""

from __future__ import annotations

from pathlib import Path

import pytest

import actionrec.runtime.cores as cores_module
from actionrec.runtime.cores import encoder_threads_alongside_decoder, usable_cores


@pytest.mark.parametrize(("cores", "encoder"), [(1, 1), (2, 1), (3, 2), (8, 4), (16, 8)])
def test_an_encoder_sharing_the_cores_takes_half(cores: int, encoder: int):
    assert encoder_threads_alongside_decoder(cores) == encoder


def test_usable_cores_is_at_least_one():
    assert usable_cores() >= 1


def test_hyper_threads_of_one_core_count_once(monkeypatch, tmp_path: Path):
    assert 1 <= cores_module.usable_physical_cores() <= cores_module.usable_cores()
    for cpu, siblings in enumerate(["0,2", "1,3", "0,2", "1,3"]):
        (tmp_path / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (tmp_path / f"cpu{cpu}" / "topology" / "thread_siblings_list").write_text(siblings + "\n")
    monkeypatch.setattr(cores_module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert cores_module.usable_physical_cores(tmp_path) == 2
    monkeypatch.setattr(cores_module.os, "sched_getaffinity", lambda pid: {0, 2}, raising=False)
    assert cores_module.usable_physical_cores(tmp_path) == 1
    assert cores_module.usable_physical_cores(tmp_path / "missing") == cores_module.usable_cores()
