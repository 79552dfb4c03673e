"""How stages that run at once share the cores (actionrec.cores)."""

from __future__ import annotations

import pytest

from actionrec.cores import decoder_threads_alongside_encoder, encoder_threads_alongside_decoder, usable_cores


@pytest.mark.parametrize(("cores", "decoder", "encoder"), [(1, 1, 1), (2, 1, 1), (3, 1, 2), (8, 4, 4), (16, 8, 8)])
def test_the_decoder_and_the_encoder_each_take_half(cores: int, decoder: int, encoder: int):
    assert decoder_threads_alongside_encoder(cores) == decoder
    assert encoder_threads_alongside_decoder(cores) == encoder


def test_usable_cores_is_at_least_one():
    assert usable_cores() >= 1
