"""What the report measures on one tensor: entropies from per-channel counts, layout sizes from entropy, checked
against independent computations and against real files."""

from __future__ import annotations

import numpy as np
import pytest

import entropy
from analysis import coding
from analysis.errors import AnalysisError
from entropy.codec.measures import shannon_entropy


def _activations(rng, shape, bits, dtype=np.uint8):
    """ReLU-like codes: many zeros, a Laplace tail, channel c clipped to 2**bits[c] - 1."""
    C = shape[1]
    scale = rng.uniform(0.3, 4.0, C)
    x = np.maximum(rng.laplace(-0.2, 1.0, shape), 0) * scale.reshape((1, C) + (1,) * (len(shape) - 2))
    hi = (2 ** np.asarray(bits) - 1).reshape((1, C) + (1,) * (len(shape) - 2))
    return np.clip(np.round(x), 0, hi).astype(dtype)


def _weights(rng, shape, lo=-8, hi=7):
    C = shape[0]
    s = rng.uniform(0.5, 3.0, C).reshape((C,) + (1,) * (len(shape) - 1))
    return np.clip(np.round(rng.normal(0, 1, shape) * s), lo, hi).astype(np.int8)


@pytest.mark.parametrize("shape,axis", [((3, 5, 4, 7), 1), ((6, 2, 3, 3), 0), ((5, 9), 1), ((11,), None)])
def test_entropies_match_bincount(shape, axis):
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 9, shape).astype(np.int16)
    tc = coding.tensor_counts(x, axis)
    rows = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1) if axis is not None else x.reshape(1, -1)
    assert coding.pooled_entropy(tc) == pytest.approx(shannon_entropy(np.bincount(x.ravel() - x.min())))
    cond = sum(shannon_entropy(np.bincount(r - r.min())) * r.size for r in rows) / x.size
    assert coding.channel_entropy(tc) == pytest.approx(cond)
    assert coding.channel_entropy(tc) <= coding.pooled_entropy(tc) + 1e-12


@pytest.mark.parametrize(
    "make,axis",
    [
        (lambda rng: _activations(rng, (3, 8, 7, 7), rng.integers(1, 5, 8)), 1),
        (lambda rng: _activations(rng, (4, 24, 6, 6), rng.integers(1, 5, 24)), 1),
        (lambda rng: _weights(rng, (10, 1, 3, 3)), 0),  # depthwise: 9 values per channel
        (lambda rng: _weights(rng, (6, 4, 1, 1)), 0),
    ],
)
def test_layout_sizes_equal_the_written_file(tmp_path, make, axis):
    """Every layout's coded bits (metadata arrays excluded) equal what entropy.save writes for that layout,
    and the best is what entropy.save picks on its own."""
    rng = np.random.default_rng(3)
    x = make(rng)
    C = x.shape[axis]
    meta = entropy.metadata_arrays("blk.conv", {"bits": rng.integers(2, 5, C).astype(np.uint8),
                                                "scale": rng.random(C).astype(np.float32), "axis": axis})
    lm = coding.measure_layouts(x, axis, name="blk.conv", quant=meta, clusters=(2, 4))
    assert {"single", "bitwidth", "cluster2"} <= set(lm.choices)
    for name, choice in lm.choices.items():
        fi = entropy.save(tmp_path / f"{name}.hqt", {"blk.conv": x}, channel_axis=axis, quant={"blk.conv": meta},
                          layout=name, verify=True)
        t = fi.tensor("blk.conv")
        assert t.metadata_bytes == lm.arrays_bytes
        assert 8 * (t.total_bytes - t.metadata_bytes) == lm.coded_bits(choice), name
        assert t.payload_bits == choice.payload_bits and t.n_codebooks == len(choice.streams)
    auto = entropy.save(tmp_path / "auto.hqt", {"blk.conv": x}, channel_axis=axis, quant={"blk.conv": meta},
                        clusters=(2, 4)).tensor("blk.conv")
    assert 8 * (auto.total_bytes - auto.metadata_bytes) == lm.coded_bits() == min(
        lm.coded_bits(c) for c in lm.choices.values())
    assert auto.layout == lm.best.layout
    parts = lm.parts()
    assert sum(parts.values()) == lm.coded_bits() and min(parts.values()) >= 0
    assert parts["payload_bits"] == auto.payload_bits


def test_columns_and_the_skipped_channel_layout():
    rng = np.random.default_rng(5)
    x = _activations(rng, (2, 30, 3, 3), rng.integers(1, 6, 30))  # short rows: one code per channel cannot win
    tc = coding.tensor_counts(x, 1)
    lm = coding.measure_layouts(x, 1, name="l", clusters=(2, 4))
    cols = lm.columns(tc)
    clusters = [c for n, c in lm.choices.items() if n.startswith("cluster")]
    best_cluster = min(clusters, key=lambda c: c.total_bytes)
    assert cols["acl_cluster"] == best_cluster.avg_code_length
    assert cols["bpv_cluster"] == lm.coded_bits(best_cluster) / x.size
    assert cols["acl_single"] == lm.choices["single"].avg_code_length
    assert cols["acl_bitwidth"] is None and cols["bpv_bitwidth"] is None  # no bits stored
    assert "channel" not in lm.choices and cols["bpv_channel"] is None
    # the skipped layout's payload: one optimal 12-bit-limited code per channel, summed independently
    rows = np.moveaxis(x, 1, 0).reshape(30, -1)
    pay = 0
    for r in rows:
        counts = np.bincount(r)
        pay += int(np.dot(counts, entropy.code_lengths(counts, 12)))
    assert cols["acl_channel"] == pytest.approx(pay / x.size)


def test_stream_modes_are_the_files():
    rng = np.random.default_rng(6)
    sparse = (rng.random((1, 4, 64, 64)) < 0.05).astype(np.uint8) * rng.integers(1, 4, (1, 4, 64, 64)).astype(np.uint8)
    dense = rng.integers(0, 3, (1, 4, 64, 64)).astype(np.uint8)
    for x in (sparse, dense):
        lm = coding.measure_layouts(x, 1, name="t")
        text = coding.stream_modes(lm.best)
        got = {m: int(k) for m, k in (p.split(":") for p in text.split(";"))}
        assert sum(got.values()) == len(lm.best.streams) and set(got) <= {"plain", "pairs", "runs"}
        import tempfile
        with tempfile.TemporaryDirectory() as td:
            fi = entropy.save(f"{td}/t.hqt", {"t": x}, channel_axis=1)
        modes = [s.mode for s in fi.tensor("t").streams]
        assert got == {m: modes.count(m) for m in set(modes)}


def test_metadata_is_measured_as_the_file_stores_it(tmp_path):
    """Python numbers in the quantization metadata are stored as int64/float64/bool arrays, ``None`` left out; the
    measured metadata bytes are the written record's, and the coded bits exclude exactly them."""
    meta = {"scale": np.float32([0.5, 0.25]), "zero_point": np.int8([0, 1]), "bits": 4, "ratio": 0.5,
            "signed": True, "axis": None}
    x = np.arange(8, dtype=np.uint8).reshape(2, 4)
    lm = coding.measure_layouts(x, None, name="t", quant=meta)
    assert set(lm.arrays) == {"scale", "zero_point", "bits", "ratio", "signed"}
    assert lm.arrays["bits"].dtype == np.int64 and lm.arrays["ratio"].dtype == np.float64
    assert lm.arrays["signed"].dtype == bool and lm.arrays["scale"].dtype == np.float32
    t = entropy.save(tmp_path / "m.hqt", {"t": x}, quant={"t": meta}).tensor("t")
    bare = entropy.save(tmp_path / "b.hqt", {"t": x}).tensor("t")
    assert t.metadata_bytes == lm.arrays_bytes > 0 and bare.metadata_bytes == 0
    assert 8 * bare.total_bytes == lm.coded_bits() == 8 * (t.total_bytes - t.metadata_bytes)
    with pytest.raises(AnalysisError, match="'t'.*'name'"):
        coding.measure_layouts(x, None, name="t", quant={"name": np.array(["conv"])})


def test_bad_input():
    with pytest.raises(AnalysisError, match="integers"):
        coding.tensor_counts(np.zeros((2, 2), np.float32), 0)
    with pytest.raises(AnalysisError, match="empty"):
        coding.tensor_counts(np.zeros((0, 3), np.uint8), 1)
    with pytest.raises(AnalysisError, match="t:"):
        coding.measure_layouts(np.zeros((2, 3), np.uint8), 4, name="t")
