"""Coding choices: counts, exact closed-form sizes against the real codec and the real file."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import coding
from analysis.errors import AnalysisError
from entropy.codec import decode
from entropy.container import HQTFile
from entropy.measures import shannon_entropy


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
def test_counts_match_bincount_per_channel(shape, axis):
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 9, shape).astype(np.int16)
    tc = coding.tensor_counts(x, axis)
    rows = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1) if axis is not None else x.reshape(1, -1)
    assert tc.row_length == rows.shape[1]
    for c in range(rows.shape[0]):
        expect = np.bincount(rows[c] - x.min(), minlength=tc.value_range)
        assert np.array_equal(tc.counts[c], expect)
        assert tc.row_min[c] == rows[c].min() and tc.row_max[c] == rows[c].max()
    assert np.array_equal(coding.channel_rows(x, axis), rows)
    assert np.array_equal(coding.from_rows(rows, x.shape, axis), x)


def test_entropy_measures_bound_code_lengths():
    rng = np.random.default_rng(2)
    x = _activations(rng, (4, 12, 9, 9), rng.integers(2, 6, 12))
    tc = coding.tensor_counts(x, 1)
    pooled = np.bincount(x.ravel())
    assert coding.pooled_entropy(tc) == pytest.approx(shannon_entropy(pooled))
    rows = coding.channel_rows(x, 1)
    cond = sum(shannon_entropy(np.bincount(r)) * r.size for r in rows) / x.size
    assert coding.channel_entropy(tc) == pytest.approx(cond)
    assert coding.channel_entropy(tc) <= coding.pooled_entropy(tc) + 1e-12
    ch = coding.coding_choices(tc, layer="t", prune_channel=False)
    h = coding.pooled_entropy(tc)
    assert ch["channel"].payload_bits == coding.channel_payload_bits(tc).sum()
    assert h <= ch["layer"].avg_code_length < h + 1
    hc = coding.channel_entropy(tc)
    assert hc <= ch["channel"].avg_code_length < hc + 1
    for c in ch.values():
        assert c.total_bits == c.payload_bits + c.codebook_bits + c.index_bits + c.record_bits + c.map_bits
        assert c.total_bits > c.payload_bits
    best = coding.best_choice(ch)
    assert best.total_bits == min(c.total_bits for c in ch.values())


@pytest.mark.parametrize(
    "make,axis",
    [
        (lambda rng: _activations(rng, (3, 8, 7, 7), rng.integers(1, 5, 8)), 1),  # odd row length: straddling pairs
        (lambda rng: _activations(rng, (4, 8, 6, 6), rng.integers(1, 5, 8)), 1),  # even row length
        (lambda rng: _weights(rng, (10, 1, 3, 3)), 0),  # depthwise: 9 values per channel
        (lambda rng: _weights(rng, (6, 4, 1, 1)), 0),
    ],
)
def test_closed_form_equals_codec_and_file(tmp_path, make, axis):
    rng = np.random.default_rng(3)
    x = make(rng)
    tc = coding.tensor_counts(x, axis)
    bits = rng.integers(2, 5, tc.n_channels).astype(float)
    choices = coding.coding_choices(tc, layer="blk.conv", channel_bits=bits, clusters=(2, 4), prune_channel=False)
    assert {"layer", "channel", "layer-pairs", "bitwidth", "cluster2"} <= set(choices)
    rows = coding.channel_rows(x, axis)
    for name, ch in choices.items():
        encs = coding.encode_choice(rows, ch)  # raises if the codec's payload differs from the closed form
        back = coding.reassemble([decode(e) for e in encs], ch, tc.n_channels, tc.row_length, x.dtype)
        assert np.array_equal(coding.from_rows(back, x.shape, axis), x), name
        path = tmp_path / f"{name}.hqt"
        info = coding.save_choices(path, [coding.LayerCoding("blk.conv", rows, ch)])
        in_file = sum(8 * t.total_bytes for t in info.tensors)
        assert in_file == ch.total_bits, name
        assert in_file >= ch.payload_bits
        with HQTFile(path) as f:
            got = coding.load_choice(f, "blk.conv", ch, tc.n_channels, tc.row_length, x.dtype)
            if ch.map_bits:  # the cluster map in the file says where each row goes
                for i, s in enumerate(ch.segments):
                    name_i = coding.segment_name("blk.conv", ch.name, i, len(ch.segments))
                    assert np.array_equal(f.quant(name_i)["channels"], s.channels)
        assert np.array_equal(got, rows)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 4), st.integers(1, 6), st.integers(1, 9), st.integers(1, 20), st.integers(0, 2**31 - 1)
)
def test_pair_counts_closed_form_property(n, c, m, levels, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, (n, c, m)).astype(np.uint8)
    tc = coding.tensor_counts(x, 1)
    rows = coding.channel_rows(x, 1)
    ch = coding.coding_choices(tc, layer="p", clusters=(2,))
    for name in ("layer-pairs", "cluster2-pairs"):
        if name in ch:
            encs = coding.encode_choice(rows, ch[name])
            assert sum(e.accounting.payload_bits for e in encs) == ch[name].payload_bits


def test_wide_channels_are_not_paired():
    # pairs need a window of at most 256 values (65536 pair symbols)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 300, (2, 4, 50)).astype(np.uint16)
    tc = coding.tensor_counts(x, 1)
    assert (tc.row_max - tc.row_min >= 256).all()
    ch = coding.coding_choices(tc, layer="w", prune_channel=False)
    assert not any(n.endswith("-pairs") for n in ch)
    assert "layer" in ch and "channel" in ch


def test_bad_input():
    with pytest.raises(AnalysisError, match="integers"):
        coding.tensor_counts(np.zeros((2, 2), np.float32), 0)
    with pytest.raises(AnalysisError, match="empty"):
        coding.tensor_counts(np.zeros((0, 3), np.uint8), 1)
    with pytest.raises(AnalysisError, match="outside the alphabet"):
        coding.tensor_counts(np.array([[1, 9]], np.uint8), 0, value_min=0, value_max=7)
    tc = coding.tensor_counts(np.arange(12, dtype=np.uint8).reshape(3, 4), 0)
    with pytest.raises(AnalysisError, match="channel bit widths"):
        coding.coding_choices(tc, channel_bits=[4, 4])
    with pytest.raises(AnalysisError, match="no coding choice"):
        coding.best_choice({})


def test_channel_pruning_never_changes_the_pick():
    rng = np.random.default_rng(5)
    for shape in ((2, 6, 40, 40), (2, 30, 3, 3), (1, 4, 200, 200)):
        x = _activations(rng, shape, rng.integers(1, 6, shape[1]))
        tc = coding.tensor_counts(x, 1)
        full = coding.coding_choices(tc, layer="l", clusters=(2,), prune_channel=False)
        pruned = coding.coding_choices(tc, layer="l", clusters=(2,))
        assert coding.best_choice(pruned).total_bits == coding.best_choice(full).total_bits
        if "channel" not in pruned:  # pruned only when its exact size could not win
            assert full["channel"].total_bits >= coding.best_choice(full).total_bits
