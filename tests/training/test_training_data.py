"""Training's batches: streamed from the cache files a few at a time (in loader worker processes too),
each rank's share of every global batch, and random shifts that depend on the clip and the epoch."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from actionrec.datasets import Sample

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")

from actionrec.training.cache import ClipCache  # noqa: E402
from actionrec.training.data import CachedViews, Shard, epoch_batches, loader  # noqa: E402


def test_the_cache_key_holds_the_sampling_version(tmp_path: Path, monkeypatch):
    """Frames or features sampled by another rule are never read back from the cache."""
    from actionrec.training.config import TrainConfig
    from actionrec.training.features import cache_for
    from actionrec.video import spec

    config = TrainConfig(data_dir=str(tmp_path), out=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), frames=4,
                         image_size=32)
    now = cache_for(config, 1, "mobilenet_v2-none").folder
    assert cache_for(config, 1, "mobilenet_v2-none").folder == now
    monkeypatch.setattr(spec, "SAMPLING_VERSION", spec.SAMPLING_VERSION + 1)
    assert cache_for(config, 1, "mobilenet_v2-none").folder != now


def test_batches_stream_from_the_cache_files_without_holding_the_split(tmp_path: Path):
    """An epoch over 240 cached clips (56 MB) holds a few batches at a time, not the split."""
    clips, views, shape = 240, 2, (8, 64, 64, 3)
    cache = ClipCache(tmp_path / "cache", {"test": "stream"})
    rng = np.random.default_rng(0)
    samples = []
    for index in range(clips):
        video = tmp_path / f"clip{index:03d}.mp4"
        video.write_bytes(b"not read: the cache has it")
        cache.put(video, rng.integers(0, 256, (views, *shape), dtype=np.uint8))
        samples.append(Sample(video, index % 3))
    split_bytes = clips * views * int(np.prod(shape))
    keys = [(index, index % views) for index in range(clips)]
    batches = [part for part, _ in epoch_batches(keys, 8, Shard())]

    tracemalloc.start()
    try:
        seen = 0
        for arrays, labels in loader(CachedViews(cache, samples), batches, workers=0, pin_memory=False):
            assert arrays.shape == (8, *shape)
            seen += len(labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == clips
    assert peak < split_bytes / 10, f"peak {peak / 2**20:.1f} MB for a {split_bytes / 2**20:.0f} MB split"

    # Loader worker processes read ahead and give the same batches in the same order.
    read_alone = [a.clone() for a, _ in loader(CachedViews(cache, samples), batches[:6], 0, False)]
    read_ahead = [a for a, _ in loader(CachedViews(cache, samples), batches[:6], 2, False)]
    assert all(torch.equal(a, b) for a, b in zip(read_alone, read_ahead))


def test_each_rank_gets_its_share_of_every_global_batch():
    keys = [(index, 0) for index in range(10)]
    shards = [epoch_batches(keys, 4, Shard(rank, 3)) for rank in range(3)]
    assert [size for _, size in shards[0]] == [4, 4, 2]
    for step in range(3):
        taken = [key for shard in shards for key in shard[step][0] if shard[step][1]]
        assert sorted(taken) == keys[step * 4 : step * 4 + 4]
    assert shards[2][2] == ([(8, 0)], 0)  # nothing left for rank 2 in the last batch: a key weighed 0


def test_shifts_depend_on_the_clip_and_epoch_not_on_the_batch():
    from actionrec.training.data import shift_clips

    frames = torch.arange(2 * 3 * 16 * 16 * 3, dtype=torch.int64).reshape(2, 3, 16, 16, 3).to(torch.uint8)
    together = shift_clips(frames, [5, 9], seed=0, epoch=1, share=0.125)
    alone = shift_clips(frames[1:], [9], seed=0, epoch=1, share=0.125)
    assert torch.equal(together[1], alone[0])
    assert not torch.equal(together, shift_clips(frames, [5, 9], seed=0, epoch=2, share=0.125))
    assert torch.equal(shift_clips(frames, [5, 9], seed=0, epoch=1, share=0.0), frames)
    # All frames of a clip move alike: the difference between frames is kept.
    assert torch.equal(together[0, 1].int() - together[0, 0].int(), frames[0, 1].int() - frames[0, 0].int())
