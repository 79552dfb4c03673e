"""How stages that run at once share the cores (actionrec.cores)."""

from __future__ import annotations

import pytest

from actionrec.cores import encoder_threads_alongside_decoder, usable_cores


@pytest.mark.parametrize(("cores", "encoder"), [(1, 1), (2, 1), (3, 2), (8, 4), (16, 8)])
def test_an_encoder_sharing_the_cores_takes_half(cores: int, encoder: int):
    assert encoder_threads_alongside_decoder(cores) == encoder


def test_usable_cores_is_at_least_one():
    assert usable_cores() >= 1
