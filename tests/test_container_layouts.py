"""Tensor layouts (format version 2): the search's sizes are the written bytes, auto picks the smallest, every
layout round-trips and reads by channel range, forced layouts, channel axes, the verify option, and the size of
a one-code tensor against version 1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import entropy
from analysis.cli import main
import entropy as C
from entropy.file import reader as R
from entropy.errors import FormatError, IntegrityError


def _acts(rng, shape, axis=1, levels=16, dtype=np.uint8):
    """ReLU-like codes with a scale per channel: many zeros, channels of different spread."""
    C_ = shape[axis]
    scale = rng.uniform(0.2, 4.0, C_).reshape([C_ if i == axis else 1 for i in range(len(shape))])
    x = np.maximum(rng.laplace(-0.3, 1.0, shape), 0) * scale
    return np.clip(np.round(x), 0, levels - 1).astype(dtype)


def _check_exact(tmp_path, x, axis, layout, **kw):
    """Plan, write and read one tensor in ``layout``: predicted bytes == written bytes, values back."""
    plan = entropy.plan_file({"t": x}, channel_axis=axis, layout=layout, **kw)
    choice = plan.tensors[0].choice
    path = tmp_path / f"{layout}.hqt"
    fi = entropy.write_plan(plan, path)
    assert plan.file_bytes == fi.file_bytes == os.path.getsize(path)
    t = fi.tensor("t")
    assert choice.total_bytes == t.total_bytes  # the search's size of the tensor is what the file attributes
    assert (choice.record_bytes, choice.index_bytes, choice.payload_bytes, choice.padding_bytes) == (
        t.entry_bytes, t.index_bytes, t.payload_bytes, t.padding_bytes)
    assert choice.payload_bits == t.payload_bits and len(choice.streams) == t.n_codebooks
    back = entropy.load_tensor(path, "t")
    assert back.dtype == x.dtype and back.shape == x.shape and np.array_equal(back, x)
    return choice, fi


@pytest.mark.parametrize(
    "shape,axis,dtype,levels",
    [((2, 6, 5, 7), 1, np.uint8, 16), ((7, 3, 3, 3), 0, np.int8, 8), ((3, 10, 9), 2, np.int16, 40),
     ((1, 12, 8, 8), 1, np.uint16, 5)],
)
@pytest.mark.parametrize("group", ["auto", 1, 2])
def test_every_layout_is_exact_and_round_trips(tmp_path, shape, axis, dtype, levels, group):
    rng = np.random.default_rng(sum(shape) + levels)
    x = _acts(rng, shape, axis, levels, dtype)
    if dtype == np.int8:
        x = (x.astype(np.int16) - levels // 2).astype(dtype)
    bits = rng.integers(2, 5, shape[axis]).astype(np.float32)
    quant = {"t": {"bits": bits, "scale": np.float32(0.1)}}
    choices = entropy.layout_choices(x, name="t", axis=axis, arrays={"bits": bits, "scale": np.float32(0.1)},
                                     group=group, chunk_size=64, clusters=(2, 4), prune=False)
    assert {"single", "channel", "bitwidth", "cluster2", "cluster4"} <= set(choices)
    for name, c in choices.items():
        got, fi = _check_exact(tmp_path, x, axis, name, group=group, chunk_size=64, quant=quant, clusters=(2, 4))
        assert got.total_bytes == c.total_bytes, name
        if group == 1:
            assert all(s.params.group == 1 for s in got.streams)
        # channel ranges decode from their chunks alone
        n = shape[axis]
        for a, b in ((0, 1), (n // 2, n), (1, n - 1)):
            want = np.take(x, range(a, b), axis=axis)
            assert np.array_equal(entropy.load_tensor(tmp_path / f"{name}.hqt", "t", channels=slice(a, b)), want)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 7), st.integers(1, 11), st.integers(1, 40), st.sampled_from([1, 2, "auto"]),
       st.sampled_from([2, 6, 16, 4096]), st.integers(0, 2**31 - 1))
def test_predicted_bytes_are_the_written_bytes(tmp_path_factory, n, c, m, levels, group, chunk, seed):
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, levels, (n, c, m)) * rng.integers(1, 3, (1, c, 1))).astype(np.uint16)
    tmp = tmp_path_factory.mktemp("exact")
    choices = entropy.layout_choices(x, name="t", axis=1, group=group, chunk_size=chunk, clusters=(2, 3), prune=False)
    for name in choices:
        _check_exact(tmp, x, 1, name, group=group, chunk_size=chunk, clusters=(2, 3))


def test_auto_picks_the_smallest_layout(tmp_path):
    rng = np.random.default_rng(3)
    for shape in ((1, 16, 28, 28), (4, 8, 6, 6), (2, 32, 3, 3)):
        x = _acts(rng, shape)
        sizes = {name: _check_exact(tmp_path, x, 1, name)[1].file_bytes
                 for name in entropy.layout_choices(x, name="t", axis=1, prune=False)}
        auto = entropy.save(tmp_path / "auto.hqt", {"t": x}, channel_axis=1)
        assert auto.file_bytes == min(sizes.values())
        pruned = entropy.layout_choices(x, name="t", axis=1)  # pruning one code per channel never changes the pick
        assert entropy.choose_layout(x, name="t", axis=1).total_bytes == min(c.total_bytes for c in pruned.values())
        assert min(c.total_bytes for c in pruned.values()) == min(
            c.total_bytes for c in entropy.layout_choices(x, name="t", axis=1, prune=False).values())


def test_channel_layouts_beat_one_code_on_channel_structured_data(tmp_path):
    # channels of very different spread: a code per cluster of channels is smaller than one code
    # (channels of 1 to 4 bits, as a per-channel bit allocation makes them)
    rng = np.random.default_rng(4)
    bits = rng.integers(1, 5, 64)
    x = np.minimum(_acts(rng, (1, 64, 56, 56)), (2**bits - 1).reshape(1, 64, 1, 1)).astype(np.uint8)
    single = entropy.save(tmp_path / "s.hqt", {"a": x})
    best = entropy.save(tmp_path / "b.hqt", {"a": x}, channel_axis=1, quant={"a": {"bits": bits.astype(np.uint8)}})
    assert best.tensor("a").layout in ("bitwidth", "cluster")
    assert best.file_bytes < 0.97 * single.file_bytes


def test_forced_layouts_and_their_errors(tmp_path):
    rng = np.random.default_rng(6)
    x = _acts(rng, (2, 5, 4, 4))
    for lay, want in (("single", "single"), ("channel", "channel"), ("cluster", "cluster"), ("cluster3", "cluster")):
        fi = entropy.save(tmp_path / "f.hqt", {"x": x}, channel_axis=1, layout=lay)
        assert fi.tensor("x").layout == want
    assert entropy.save(tmp_path / "f.hqt", {"x": x}, channel_axis=1, layout="cluster3").tensor("x").n_codebooks == 3
    with pytest.raises(FormatError, match="bitwidth.*'bits'"):
        entropy.save(tmp_path / "f.hqt", {"x": x}, channel_axis=1, layout="bitwidth")
    with pytest.raises(FormatError, match="no channel axis"):
        entropy.save(tmp_path / "f.hqt", {"x": x}, layout="channel")
    with pytest.raises(FormatError, match="unknown layout"):
        entropy.save(tmp_path / "f.hqt", {"x": x}, channel_axis=1, layout="zigzag")
    with pytest.raises(FormatError, match="channel axis 4 out of range"):
        entropy.save(tmp_path / "f.hqt", {"x": x}, channel_axis={"x": 4})
    with pytest.raises(FormatError, match="unknown or pre-encoded"):
        entropy.save(tmp_path / "f.hqt", {"x": x}, channel_axis={"y": 0})
    with pytest.raises(FormatError, match="empty tensor"):
        entropy.save(tmp_path / "f.hqt", {"e": np.zeros((0, 3), np.uint8)}, channel_axis=0, layout="channel")
    # one int for all tensors: those without that axis are coded whole
    fi = entropy.save(tmp_path / "f.hqt", {"x": x, "v": np.arange(6, dtype=np.uint8), "s": np.array(3, np.int8),
                                           "e": np.zeros((0, 2), np.uint8)}, channel_axis=-3)
    assert {t.name: t.channel_axis for t in fi.tensors} == {"x": 1, "v": None, "s": None, "e": None}
    assert np.array_equal(entropy.load(tmp_path / "f.hqt")["x"], x)


def test_big_endian_input_round_trips(tmp_path):
    x = np.array([[0, 1, 256, 257], [3, 3, 2, 1000]], ">i2")
    for axis in (None, 0):
        fi = entropy.save(tmp_path / "be.hqt", {"x": x}, channel_axis=axis, layout="single" if axis is None else "channel")
        back = entropy.load_tensor(tmp_path / "be.hqt", "x")
        assert back.dtype == np.dtype("<i2") and np.array_equal(back, x) and fi.tensor("x").dtype == "int16"


def test_verify_catches_a_file_that_does_not_decode_to_the_input(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(7)
    x = _acts(rng, (1, 8, 5, 5))
    path = tmp_path / "v.hqt"
    entropy.save(path, {"x": x}, channel_axis=1, verify=True)
    before = path.read_bytes()
    real_read = R.HQTFile.read

    def off_by_one(self, name, **kw):
        out = real_read(self, name, **kw)
        out.flat[3] += 1
        return out

    monkeypatch.setattr(R.HQTFile, "read", off_by_one)
    with pytest.raises(IntegrityError, match="decodes to other values"):
        entropy.save(path, {"x": x[:, ::-1].copy()}, channel_axis=1, verify=True)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["v.hqt"]  # target untouched
    src = tmp_path / "x.npz"
    np.savez(src, x=x)
    capsys.readouterr()
    assert main(["encode", str(src), "-o", str(tmp_path / "cli.hqt"), "--channel-axis", "1", "--verify"]) == 1
    err = capsys.readouterr().err
    assert "IntegrityError" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "cli.hqt").exists()


def test_cli_encode_layouts_and_inspect(tmp_path, capsys):
    rng = np.random.default_rng(8)
    t = {"acts": _acts(rng, (1, 16, 12, 12)), "w": (_acts(rng, (8, 4, 3, 3), axis=0, levels=8)).astype(np.int8)}
    src = tmp_path / "t.npz"
    np.savez(src, **t)
    out = tmp_path / "t.hqt"
    assert main(["encode", str(src), "-o", str(out), "--channel-axis", "1", "--verify"]) == 0
    assert "verified" in capsys.readouterr().out
    assert main(["inspect", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in doc["tensors"]}
    for r in rows.values():
        assert r["layout"] in entropy.LAYOUTS and r["n_codebooks"] == len(r["streams"]) >= 1
        assert r["channel_axis"] == 1
    assert main(["inspect", str(out)]) == 0
    table = capsys.readouterr().out
    assert "layout" in table and "codes" in table
    for r in rows.values():
        assert f'{r["layout"]}@1' in table
    assert main(["encode", str(src), "-o", str(out), "--channel-axis", "1", "--layout", "cluster2"]) == 0
    assert {x.layout for x in entropy.info(out).tensors} == {"cluster"}
    back = tmp_path / "back.npz"
    assert main(["-q", "decode", str(out), "-o", str(back)]) == 0
    with np.load(back) as z:
        for k, v in t.items():
            assert z[k].dtype == v.dtype and np.array_equal(z[k], v)
    with pytest.raises(SystemExit) as exc:
        main(["encode", str(src), "-o", str(out), "--layout", "channel"])  # needs --channel-axis
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["encode", str(src), "-o", str(out), "--channel-axis", "1", "--layout", "cluster0"])
    assert exc.value.code == 2


def test_one_code_tensors_are_smaller_than_in_version_1(tmp_path):
    """Re-writing the version-1 reference files' tensors: every tensor record is 22 bytes shorter (FORMAT.md:
    98 + name + 8 ndim bytes in version 1, 2 + 4 + 32 + 38 = 76 + name + 8 ndim in version 2), nothing else
    changes but the tensors now stored (smaller), so no file grows."""
    data = Path(__file__).parent / "data" / "v1"
    manifest = json.loads((data / "manifest.json").read_text())
    with np.load(data / "expected.npz") as z:
        expected = {k: z[k] for k in z.files}
    opts = {"mixed.hqt": dict(chunk_size=256), "shared.hqt": dict(share_codebooks=True, group=1, chunk_size=512),
            "index4.hqt": dict(chunk_size=8192, group=1), "index4_pairs.hqt": dict(chunk_size=16384, group=2)}
    for fname, entry in manifest.items():
        v1 = entropy.info(data / fname)
        tensors = {t["name"]: expected[t["key"]] for t in entry["tensors"]}
        quant = {t["name"]: {k: expected[key] for k, key in t["quant"].items()} for t in entry["tensors"] if t["quant"]}
        v2 = entropy.save(tmp_path / fname, tensors, entry["metadata"], quant=quant, **opts[fname])
        assert v2.version == 2 and v2.file_bytes <= v1.file_bytes
        for a, b in zip(v1.tensors, v2.tensors):
            assert b.entry_bytes == a.entry_bytes - 22, a.name
            if b.streams[0].mode == "stored":  # (no code is smaller: chosen only where "auto" may)
                assert "group" not in opts[fname]
                assert b.payload_bytes + b.index_bytes + b.codebook_bytes < a.payload_bytes + a.index_bytes + a.codebook_bytes
                continue
            assert (b.payload_bits, b.index_bytes) == (a.payload_bits, a.index_bytes)
            # (a codebook record shared with stored streams - the empty code - is split over more users)
            assert b.codebook_bytes == a.codebook_bytes or b.codebook_bytes < a.codebook_bytes and b.n_values == 0
        # the data blocks are the same; the headers differ by the records (and the header padding, < 8 bytes)
        if not any(t.streams[0].mode == "stored" for t in v2.tensors):
            assert abs((v1.file_bytes - v2.file_bytes) - 22 * len(v1.tensors)) < 8


# ---- every symbol mode in the channel layouts -----------------------------------------------------------------------

from dataclasses import replace  # noqa: E402

from entropy.layout import channel_counts as CC  # noqa: E402
from entropy.layout import row_sets  # noqa: E402
from entropy.codec.params import CodecParams  # noqa: E402
from entropy.codec.modes import stream_histogram, symbol_histograms  # noqa: E402


def _sparse_channels(rng, C, M, zeros, runs=False, levels=16):
    """Channels of ``M`` values, a share ``zeros[c]`` of them 0 (in long runs with ``runs``), the rest 1..15."""
    out = np.empty((C, M), np.uint8)
    for c in range(C):
        z = zeros[c % len(zeros)]
        if runs:  # runs of zeros of mean length 64, the non-zero stretches between them short
            keep = np.repeat(rng.random(-(-M // 64)) >= z, 64)[:M]
        else:
            keep = rng.random(M) >= z
        out[c] = np.where(keep, rng.integers(1, levels, M), 0)
    return out


def _stream_modes(choice):
    return {s.params.mode + (str(s.params.runs) if s.params.runs else "") + ("+esc" if s.params.escape_range else "")
            for s in choice.streams}


@pytest.mark.parametrize("M", [45, 64, 1000])
def test_set_histograms_are_the_codecs(M, monkeypatch):
    """The histogram of a set of rows (from the rows' histograms, cut to the set's window) is the one the codec
    counts on the set's stream: plain, pairs (with and without row structure; odd rows straddle), run symbols;
    and the same when the tensor's window is too wide to keep per row (the set's stream counted directly)."""
    rng = np.random.default_rng(M)
    x = _sparse_channels(rng, 9, M, zeros=[0.0, 0.6, 0.97])
    x[4] = np.minimum(x[4], 5) + 3  # a channel whose window excludes 0 and the top
    tc = CC.tensor_counts(x, 0)
    for ch in (np.array([4]), np.array([0, 3, 4, 8]), np.arange(9), np.array([1, 2, 5, 6, 7])):
        for chunk in (16, 4096):
            for rows in (True, False):
                base = row_sets.set_params(tc, ch, max_code_length=12, chunk_size=chunk, rows=rows)
                stream = x[ch].reshape(-1)
                lo = base.value_min
                for p in [base, replace(base, group=2)] + [
                        replace(base, runs=r, run_symbol=-lo) for r in (16, 64, 256) if lo == 0]:
                    if p.runs and not rows and ch.size > 1 and M % chunk:
                        continue  # run symbols need each row to start its own chunks
                    got = CC.set_histogram(tc, ch, p)
                    assert np.array_equal(got, stream_histogram(stream, p)), (ch, chunk, rows, p.mode)
                    if p.mode == "pairs" and not p.row_length:  # an independent count of the concatenation
                        a = stream.astype(np.int64) - lo
                        if a.size % 2:
                            a = np.append(a, 0)
                        assert np.array_equal(got, np.bincount(a[0::2] * p.value_range + a[1::2],
                                                               minlength=p.alphabet_size))
                    if p.row_length:  # the sum of the rows parsed as streams of their own
                        assert np.array_equal(got, symbol_histograms(x[ch], p).sum(axis=0))
    monkeypatch.setattr(CC, "MAX_COUNT_CELLS", 0)  # nothing kept per row: each set's stream counted itself
    tc = CC.tensor_counts(x, 0)
    ch = np.array([0, 3, 4, 8])
    p = replace(row_sets.set_params(tc, ch, max_code_length=12, chunk_size=16), group=2)
    assert CC.row_histograms(tc, tc.window(group=2, chunk_size=16)) is None
    assert np.array_equal(CC.set_histogram(tc, ch, p), stream_histogram(x[ch].reshape(-1), p))


def test_stream_histogram_sums_rows_in_bounded_memory(monkeypatch):
    from entropy.codec import modes as P

    rng = np.random.default_rng(1)
    x = _sparse_channels(rng, 13, 301, zeros=[0.2, 0.9]).astype(np.int16)
    x[5, 7] = 300  # escaped
    for p in (CodecParams(group=1, max_code_length=12, chunk_size=64, value_min=0, value_range=16, runs=16,
                          row_length=301),
              CodecParams(group=1, max_code_length=12, chunk_size=64, value_min=0, value_range=16, escape_min=0,
                          escape_range=301, row_length=301),
              CodecParams(group=2, max_code_length=12, chunk_size=64, value_min=0, value_range=16, row_length=301)):
        if not p.escape_range:
            x[5, 7] = 0
        want = symbol_histograms(x, p).sum(axis=0)
        monkeypatch.setattr(P, "_ROW_BLOCK_CELLS", 2 * p.alphabet_size)  # rows counted two at a time
        assert np.array_equal(stream_histogram(x.reshape(-1), p), want)
        monkeypatch.undo()
    bad = x.copy()
    bad[7, 300] = 99  # the last value of a row of odd length, outside the window (the pairs' pad path)
    p = CodecParams(group=2, max_code_length=12, chunk_size=64, value_min=0, value_range=16, row_length=301)
    with pytest.raises(entropy.errors.SymbolError, match="flat index 2407"):
        stream_histogram(bad.reshape(-1), p)


def test_every_mode_appears_in_channel_layouts_and_is_exact(tmp_path):
    """Channels that each favour one mode: every layout codes each stream in the mode that is smallest for it, and
    the planned bytes are the written bytes."""
    rng = np.random.default_rng(11)
    M = 4096
    sparse = _sparse_channels(rng, 4, M, zeros=[0.995, 0.999])  # long prefixes
    runs16 = _sparse_channels(rng, 4, M, zeros=[0.9])
    a = rng.integers(0, 4, (4, M // 2))
    pairs = np.repeat(a, 2, axis=1).astype(np.uint8)  # each value twice: pairs halve the payload
    dense = np.clip(np.round(rng.normal(8, 3, (4, M))), 0, 15).astype(np.uint8)
    uniform = rng.integers(0, 16, (4, M)).astype(np.uint8)  # no code is smaller than 4 bits per value
    x = np.concatenate([sparse, runs16, pairs, dense, uniform])[None]  # (1, 20, M), channel axis 1
    choices = entropy.layout_choices(x, name="t", axis=1, clusters=(5,), prune=False)
    seen = set().union(*(_stream_modes(c) for c in choices.values()))
    assert {"plain", "pairs", "runs16", "stored"} <= seen and seen & {"runs64", "runs256"}, seen
    ch = choices["channel"]
    assert [s.params.mode for s in ch.streams[8:12]] == ["pairs"] * 4
    assert all(s.params.runs > 16 for s in ch.streams[:4]) and all(s.params.mode == "runs" for s in ch.streams[4:8])
    assert [s.params.mode for s in ch.streams[16:]] == ["stored"] * 4
    for name in choices:
        _check_exact(tmp_path, x, 1, name, clusters=(5,))
    # rare values escaped: many distinct values, most of them once, a short code-length limit
    w = np.where(rng.random((4, 3000)) < 0.9, rng.integers(0, 6, (4, 3000)), rng.integers(0, 3000, (4, 3000)))
    w = w.astype(np.int16)
    choices = entropy.layout_choices(w, name="w", axis=0, max_code_length=4, clusters=(2,), prune=False)
    assert any("+esc" in m for c in choices.values() for m in _stream_modes(c))
    for name in choices:
        _check_exact(tmp_path, w, 0, name, max_code_length=4, clusters=(2,))


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 9), st.integers(1, 300), st.sampled_from([0.0, 0.6, 0.95, 0.999]), st.booleans(),
       st.sampled_from([3, 12]), st.sampled_from([2, 16, 4096]), st.sampled_from([1, 2, "auto"]),
       st.integers(0, 2**31 - 1))
def test_layouts_with_every_mode_are_exact(tmp_path_factory, c, m, zeros, runs, L, chunk, group, seed):
    rng = np.random.default_rng(seed)
    x = _sparse_channels(rng, c, m, zeros=[zeros, zeros / 2], runs=runs, levels=40)[:, None, :]  # axis 0
    tmp = tmp_path_factory.mktemp("modes")
    choices = entropy.layout_choices(x, name="t", axis=0, group=group, chunk_size=chunk, max_code_length=L,
                                     clusters=(2,), prune=False)
    for name in choices:
        _check_exact(tmp, x, 0, name, group=group, chunk_size=chunk, max_code_length=L, clusters=(2,))


@pytest.mark.parametrize("seed", range(6))
def test_channel_layout_bound_is_a_lower_bound(seed):
    rng = np.random.default_rng(seed)
    C, M = 12, [50, 301, 4096, 7, 300, 2000][seed]
    x = _sparse_channels(rng, C, M, zeros=[0.0, 0.5, 0.9, 0.995], runs=seed % 2 == 1)
    if seed >= 4:  # a tensor window too wide to count pairs (and all run prefixes) per row: narrow channels may
        x = x.astype(np.int16)  # still pair their values, and use fewer run prefixes
        x[0, :5] = [-200, 300, 120, -7, 250]
    tc = CC.tensor_counts(x, 0)
    run_value = tc.value_min + int(np.argmax(tc.pooled()))  # (the run value of the layout search)
    for group, modes in ((1, ("plain", "runs")), ("auto", ("plain", "pairs", "runs", "stored"))):
        for chunk in (16, 4096):
            ch = entropy.layout_choices(x, name="t", axis=0, group=group, chunk_size=chunk, layout="channel")["channel"]
            floors, fixed = row_sets.channel_layout_lower_bound(tc, modes=modes, max_code_length=12, chunk_size=chunk,
                                                                run_value=run_value)
            assert floors.sum() + fixed + entropy.tensor_record_bytes("t", 2, []) <= ch.total_bytes
            for c, s in enumerate(ch.streams):  # channel by channel (the search stops building once it cannot win)
                assert floors[c] <= s.payload_bytes + s.index_bytes + entropy.stream_record_bytes(s.params)


def test_clustering_on_run_symbols_separates_what_values_cannot():
    """Two kinds of channels with the same value distribution: zeros in long runs, or scattered. Their value
    histograms do not tell them apart; their run-symbol histograms do, and the clusters code smaller."""
    rng = np.random.default_rng(5)
    runs = _sparse_channels(rng, 16, 8192, zeros=[0.8], runs=True)
    scattered = _sparse_channels(rng, 16, 8192, zeros=[0.8])
    order = rng.permutation(32)
    x = np.concatenate([runs, scattered])[order]
    tc = CC.tensor_counts(x, 0)
    key = tc.window(chunk_size=4096, runs=16, run_symbol=0)
    labels = row_sets.cluster_labels(tc, 2, 12, counts=CC.row_histograms(tc, key))
    kind = order < 16
    assert labels[0] == 0 and set(labels.tolist()) == {0, 1}  # canonical: numbered in order of first channel
    assert np.array_equal(labels == labels[np.argmax(kind)], kind)
    choice = entropy.layout_choices(x, name="t", axis=0, layout="cluster2")["cluster2"]
    by_values = row_sets.cluster_labels(tc, 2, 12)
    assert not np.array_equal(choice.channel_map, by_values) and np.array_equal(choice.channel_map, labels)


def test_bench_layout_rows():
    """`huffquant bench` codes a post-ReLU activation in one code and in its best channel layout: the layout is
    smaller, lossless, and its table names it."""
    from analysis.benchmarks import bench_markdown
    from analysis.benchmarks.container import ACTIVATION, METHOD, METHOD_LAYOUT, activation, layout_rows

    a = activation()
    assert a.shape == (64, 56, 56) and a.dtype == np.uint8 and int(a.max()) == 15 and 0.5 < np.mean(a == 0) < 0.9
    assert np.array_equal(a, activation())  # fixed
    rows = {r["method"]: r for r in layout_rows(1)}
    one, best = rows[METHOD], rows[METHOD_LAYOUT]
    assert one["layout"] == "single" and best["layout"] in entropy.LAYOUTS and best["layout"] != "single"
    assert one["lossless"] and best["lossless"]
    assert best["bits_per_value"] < one["bits_per_value"]
    tc = CC.tensor_counts(a, 0)
    assert best["channel_entropy"] == pytest.approx(
        sum(entropy.shannon_entropy(r) * r.sum() for r in tc.counts) / a.size)
    text = bench_markdown({"rows": list(rows.values()), "references": {}, "setup": {
        "size": 1, "repeats": 1, "threads": "1", "machine": "m", "python": "3", "numpy": "2", "date": "d"},
        "targets": []})
    assert f"| {ACTIVATION} | {METHOD_LAYOUT} | {best['layout']} |" in text
