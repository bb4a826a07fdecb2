"""Mixed-precision channel packing: built sizes equal the closed form, round trips are lossless."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zstandard
from bitarray import bitarray

from analysis import coding, packing
from analysis.errors import AnalysisError


def _mixed(rng, levels, m, qmin=None):
    q0 = np.zeros(len(levels), np.int64) if qmin is None else np.asarray(qmin)
    return np.stack([rng.integers(q, q + lv, m) for lv, q in zip(levels, q0)])


def test_channel_widths_oracle():
    lv = np.arange(1, 600)
    expect = [0 if v == 1 else math.ceil(math.log2(v)) for v in lv]
    assert packing.channel_widths(lv).tolist() == expect
    with pytest.raises(AnalysisError):
        packing.channel_widths([0, 4])


@pytest.mark.parametrize("signed", [False, True])
def test_pack_rows_matches_bitarray_oracle(signed):
    rng = np.random.default_rng(0)
    levels = np.array([1, 2, 3, 5, 16, 39, 256, 7])
    qmin = rng.integers(-20, 0, levels.size) if signed else np.zeros(levels.size, np.int64)
    m = 37
    rows = _mixed(rng, levels, m, qmin).astype(np.int16)
    w = packing.channel_widths(levels)
    oracle = bitarray(endian="big")
    for c in range(rows.shape[0]):
        for v in rows[c]:
            if w[c]:
                oracle.extend(format(int(v - qmin[c]), f"0{w[c]}b"))
    got = packing.pack_rows(rows, w, qmin)
    assert got == oracle
    assert len(got) == m * int(w.sum())
    back = packing.unpack_rows(got, w, m, qmin, dtype=np.int16)
    assert np.array_equal(back, rows)


def test_pack_rows_rejects_values_that_do_not_fit():
    rows = np.array([[0, 1, 4]], np.uint8)
    with pytest.raises(AnalysisError, match="do not fit 2 bits"):
        packing.pack_rows(rows, np.array([2]))
    with pytest.raises(AnalysisError, match="bits"):
        packing.unpack_rows(bitarray("0101"), np.array([2]), 3)


def test_packing_sizes_and_round_trips():
    rng = np.random.default_rng(1)
    levels = np.array([2, 4, 4, 16, 16, 16, 64, 1, 8, 8])
    m = 301
    rows = _mixed(rng, levels, m).astype(np.uint8)
    lm = coding.measure_layouts(rows, 0, name="mix", quant={"bits": np.log2(levels).astype(np.float32)})
    res = packing.packing_sizes(lm, levels, layer="mix")
    w = packing.channel_widths(levels)
    assert res.widest_bits == len(packing.pack_rows(rows, np.full(levels.size, w.max()))) == rows.size * 6
    assert res.dense_bits == len(packing.pack_rows(rows, w))
    assert len(lm.choices["bitwidth"].streams) == np.unique(w).size  # one code per width group
    assert res.huffman_bitwidth_bits == lm.coded_bits(lm.choices["bitwidth"])
    done = packing.pack_layer(rows, res, levels)
    assert done.widest_ok and done.dense_ok and done.huffman_ok is None
    done = packing.check_huffman(rows, 0, done, lm.arrays)  # writes (iii) and (iv), decodes, compares sizes
    assert done.huffman_ok
    row = done.as_row()
    assert row["lossless"] is True
    assert row["dense_bpv"] == pytest.approx(w.sum() / levels.size)
    assert row["nominal_bits"] == pytest.approx(np.mean(np.log2(levels)))
    # variable-length codes let channels of different precision share one layer: never worse than the widest
    assert row["huffman_bitwidth_bpv"] < row["widest_bpv"]
    # without per-channel bits there is no width grouping: (iv) falls back to (iii)
    plain = packing.packing_sizes(coding.measure_layouts(rows, 0, name="mix"), levels, layer="mix")
    assert plain.huffman_bitwidth_bits is None
    assert plain.as_row()["huffman_bitwidth_bits"] == plain.huffman_layer_bits
    with pytest.raises(AnalysisError, match="level counts"):
        packing.packing_sizes(lm, levels[:3], layer="mix")


def test_byte_pack_and_zstd_baseline():
    rng = np.random.default_rng(2)
    rows = rng.integers(0, 16, (3, 11)).astype(np.uint8)
    nib = packing.byte_pack(rows, np.full(3, 4))
    assert len(nib) == math.ceil(rows.size / 2)
    arr = np.frombuffer(nib, np.uint8)
    flat = np.stack([arr >> 4, arr & 15], axis=1).ravel()[: rows.size]
    assert np.array_equal(flat, rows.ravel())
    raw = packing.byte_pack(rows, np.array([4, 5, 4]))
    assert raw == rows.tobytes()
    zeros = np.zeros((4, 100_000), np.uint8)
    bpv, frac = packing.zstd_bits_per_value(zeros, np.full(4, 4))
    assert frac == 1.0 and bpv < 0.01
    expect = zstandard.ZstdCompressor(level=19).compress(packing.byte_pack(zeros, np.full(4, 4)))
    assert bpv == 8 * len(expect) / zeros.size
    noise = rng.integers(0, 256, (10, 10_000)).astype(np.uint8)
    bpv_s, frac_s = packing.zstd_bits_per_value(noise, np.full(10, 8), sample_bytes=16_000)
    assert frac_s == pytest.approx(0.16, abs=0.002)
    assert 7.9 < bpv_s < 8.2  # random bytes do not compress
