"""The edges of the escape window, each with its own test: the encoder codes the values at the window's edges
and one past them (FORMAT.md §7.3: outside the window = escaped), and the decoder takes a raw escaped value up to
``escape_range - 1`` and rejects ``escape_range`` itself. Sizes are computed here from the spec, not taken from
the codec."""

from __future__ import annotations

import numpy as np
import pytest

import entropy
from entropy.errors import StreamError

VMIN, R = -4, 8  # the window: values -4..3, base symbols 0..7; the escape symbol is 8
EMIN, ERANGE = -100, 200  # escaped values -100..99 in E = 8 raw bits
E = (ERANGE - 1).bit_length()


def _params(runs: int = 0) -> entropy.CodecParams:
    return entropy.CodecParams(group=1, max_code_length=12, chunk_size=16, value_min=VMIN, value_range=R,
                               runs=runs, run_symbol=4 if runs else 0, escape_min=EMIN, escape_range=ERANGE)


def _spec_bits(x: np.ndarray, lengths: np.ndarray) -> int:
    """Payload bits of a plain stream with escapes (§7.2, §7.3): a value in the window costs its code; any
    other value the escape symbol's code and E raw bits; so does a window value whose symbol has no code."""
    total = 0
    for v in x.tolist():
        b = v - VMIN
        if 0 <= b < R and lengths[b]:
            total += int(lengths[b])
        else:
            total += int(lengths[R]) + E
    return total


EDGES = [VMIN - 1, VMIN, VMIN + 1, VMIN + R - 2, VMIN + R - 1, VMIN + R, EMIN, EMIN + 1, EMIN + ERANGE - 2,
         EMIN + ERANGE - 1]


@pytest.mark.parametrize("lengths", [
    [3, 3, 3, 3, 3, 3, 3, 4, 4],  # every window value has a code
    [3, 3, 3, 3, 3, 3, 3, 0, 3],  # the window's last value has none: it is escaped too
    [0, 3, 3, 3, 3, 3, 3, 3, 3],  # the window's first value has none
])
def test_encoder_escapes_exactly_the_values_outside_the_window(lengths):
    rng = np.random.default_rng(4)
    lengths = np.array(lengths, np.uint8)
    cb = entropy.Codebook.from_lengths(lengths)
    codable = [v for v in range(VMIN, VMIN + R) if lengths[v - VMIN]]
    x = rng.choice(codable, 16 * 40).astype(np.int16)
    x[16 * 5 : 16 * 5 + len(EDGES)] = EDGES  # in a middle chunk, away from the writer's self-checked first/last
    spread = np.arange(16 * 20 + 3, x.size - 16, 37)  # and scattered over the later chunks
    x[spread] = np.resize(EDGES, spread.size)
    enc = entropy.encode(x, params=_params(), codebook=cb)
    assert enc.accounting.payload_bits == _spec_bits(x, lengths)
    assert np.array_equal(entropy.decode(enc), x)


def test_run_encoder_escapes_exactly_the_values_outside_the_window(tmp_path):
    # run symbols with escapes: the same edges after runs of the run value (VMIN + 4 = 0)
    rng = np.random.default_rng(6)
    x = np.where(rng.random(16 * 30) < 0.7, 0, rng.integers(VMIN, VMIN + R, 16 * 30)).astype(np.int16)
    x[16 * 7 : 16 * 7 + len(EDGES)] = EDGES
    x[16 * 12 + 1 : 16 * 12 + 2 * len(EDGES) : 2] = EDGES
    enc = entropy.encode(x, params=_params(runs=16))
    assert np.array_equal(entropy.decode(enc), x)
    escaped = [v for v in x.tolist() if not VMIN <= v < VMIN + R]
    assert enc.accounting.escape_bits == E * len(escaped)


def _hand(params: entropy.CodecParams, lengths, chunk_bits, payload: bytes, n: int):
    return dict(shape=(n,), dtype="int16", params=params, codebook=entropy.Codebook.from_lengths(np.array(lengths)),
                chunk_bits=np.array(chunk_bits, dtype=np.uint32), payload=payload)


@pytest.mark.parametrize("runs", [0, 16])
def test_decoder_takes_raw_values_below_the_escape_range_only(runs):
    """A raw value u must be < escape_range (§7.3): u = escape_range - 1 decodes, u = escape_range (still
    representable in E bits) is a StreamError."""
    p = entropy.CodecParams(group=1, max_code_length=12, chunk_size=4, value_min=0, value_range=2, runs=runs,
                            escape_min=0, escape_range=5)  # raw values 0..4 in 3 bits: 5, 6, 7 are out of range
    V = 3
    lengths = np.zeros(p.alphabet_size, np.uint8)
    # symbol (0 runs, value 0) -> '0', (0 runs, value 1) -> '10', (0 runs, escape) -> '11'
    lengths[[0, 1, 2]] = [1, 2, 2]
    assert p.base_symbols == V and p.escape_bits == 3
    for raw, ok in ((0, True), (3, True), (4, True), (5, False), (6, False), (7, False)):
        bits = f"11{raw:03b}"
        payload = bytes([int(bits.ljust(8, "0"), 2)])
        parts = _hand(p, lengths, [5], payload, 1)
        if ok:
            assert entropy.decode_parts(**parts).tolist() == [raw]
        else:
            with pytest.raises(StreamError, match="chunk 0 of 1: .*escape range"):
                entropy.decode_parts(**parts)
