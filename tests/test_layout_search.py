"""The layout search from counts: it picks the layout, and the exact size, that sizing every layout exactly picks (the
reference: ``prune=False`` builds every layout and plans every stream with ``set_stream``); its floors are lower
bounds; the streams it takes from the floors' sizes are the codec's own plans; and the compiled pieces under it
(code sizes, clustering rounds, row counts) agree with plain references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import entropy
from entropy.codec.codebook import Codebook
from entropy.codec.kernels import count_groups, count_rows, rle_tokens
from entropy.codec.kernels.huffman import rle_token_bytes
from entropy.codec.kernels.sizes import size_rows
from entropy.codec.lengths import code_lengths
from entropy.codec.measures import shannon_entropy
from entropy.codec.modes import symbol_histograms
from entropy.codec.options import CodecOptions
from entropy.codec.params import SUPPORTED_DTYPES, CodecParams
from entropy.codec.streams import prepare_encode, prepare_planned
from entropy.errors import SymbolError
from entropy.layout import channel_counts as CC
from entropy.layout import row_sets
from entropy.layout.bounds import SetBatch, _set_sums, layout_floor
from entropy.layout.search import MAX_CHANNEL_STREAMS


def _tensor(rng: np.random.Generator, kind: int) -> np.ndarray:
    """Small channel-structured tensors ``[C, M]`` that favour every layout and symbol mode in turn."""
    C, M = int(rng.integers(2, 10)), int(rng.integers(1, 300))
    if kind == 0:  # channels of different spread
        x = rng.integers(0, 1 + rng.integers(1, 40, (C, 1)), (C, M))
    elif kind == 1:  # sparse and dead channels
        z = rng.choice([0.0, 0.5, 0.9, 0.99, 1.0], C)[:, None]
        x = np.where(rng.random((C, M)) < z, 0, rng.integers(1, 16, (C, M)))
    elif kind == 2:  # zeros in runs
        z = rng.choice([0.3, 0.8, 0.97], C)[:, None]
        x = np.where(np.repeat(rng.random((C, -(-M // 16))) >= z, 16, axis=1)[:, :M], rng.integers(1, 8, (C, M)), 0)
    elif kind == 3:  # wide values (escapes, raised limits, no pairs)
        x = np.round(rng.laplace(0, rng.uniform(1, 300, (C, 1)), (C, M)))
    elif kind == 4:  # equal channels (codebooks the file stores once)
        x = np.repeat(rng.integers(0, 5, (1, M)), C, axis=0)
        x[rng.random(C) < 0.3] = 0
    elif kind == 5:  # each value twice (pairs halve the payload)
        x = np.repeat(rng.integers(0, 4, (C, -(-M // 2))), 2, axis=1)[:, :M]
    else:  # uniform channels of 2**b values (no code is smaller than b bits: stored) beside skewed ones
        b = rng.integers(1, 9, (C, 1))
        x = np.where(rng.random((C, 1)) < 0.6, rng.integers(0, 1 << b, (C, M)),
                     np.minimum(rng.geometric(0.5, (C, M)) - 1, 255))
    return x.astype(np.int16 if kind == 3 else np.uint8)


_OPTIONS = st.fixed_dictionaries({
    "max_code_length": st.sampled_from([3, 6, 12]), "chunk_size": st.sampled_from([2, 16, 64, 4096]),
    "group": st.sampled_from(["auto", 1, 2]), "mode": st.sampled_from(["auto", "auto", "plain", "runs"]),
})


def _opts(o: dict) -> dict:
    o = dict(o)
    if o["mode"] != "auto":
        o["group"] = "auto"
    return o


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 6), _OPTIONS, st.integers(0, 2**31 - 1))
def test_the_search_picks_what_sizing_every_layout_picks(tmp_path_factory, kind, options, seed):
    rng = np.random.default_rng(seed)
    x = _tensor(rng, kind)
    o = _opts(options)
    bits = rng.integers(2, 5, x.shape[0]).astype(np.float32)
    arrays = {"bits": bits}
    try:
        ref = entropy.layout_choices(x, name="t", axis=0, arrays=arrays, prune=False, clusters=(2, 3), **o)
    except entropy.EntropyError:
        with pytest.raises(entropy.EntropyError):
            entropy.choose_layout(x, name="t", axis=0, arrays=arrays, clusters=(2, 3), **o)
        return
    want = entropy.best_layout(ref)
    got = entropy.choose_layout(x, name="t", axis=0, arrays=arrays, clusters=(2, 3), **o)
    assert (got.name, got.total_bytes) == (want.name, want.total_bytes)
    # every layout the search sizes has the reference's size (the streams it took from the bounds are exact)
    for variant in (dict(best_only=True), dict(prune=True)):
        for name, c in entropy.layout_choices(x, name="t", axis=0, arrays=arrays, clusters=(2, 3), **variant,
                                              **o).items():
            assert c.total_bytes == ref[name].total_bytes, (name, variant)
    # the file entropy.save writes: that layout, to the byte
    plan = entropy.plan_file({"t": x}, channel_axis=0, quant={"t": {"bits": bits}}, clusters=(2, 3), **o)
    assert plan.tensors[0].choice.total_bytes == want.total_bytes
    path = tmp_path_factory.mktemp("search") / "t.hqt"
    assert entropy.write_plan(plan, path).file_bytes == plan.file_bytes
    assert np.array_equal(entropy.load_tensor(path, "t"), x)


@pytest.mark.parametrize("dtype", [np.dtype(d).newbyteorder(o) for d in SUPPORTED_DTYPES for o in "<>"])
def test_the_search_picks_what_sizing_every_layout_picks_for_every_dtype(dtype):
    """Over a thousand rows (one stream per channel sized apart, the other layouts' set counts summed by parts) of every dtype and byte order the codec takes, values of each
    dtype's width (an alphabet of a few symbols beside one wider than pairs take): the layout and the size of
    sizing every layout exactly."""
    rng = np.random.default_rng(dtype.itemsize + 16 * (dtype.kind == "i") + 32 * (dtype.byteorder == ">"))
    C, M = 1100, 12
    spread = np.where(rng.random((C, 1)) < 0.5, 3, 300 if dtype.itemsize > 1 else 100)
    x = rng.integers(0, spread, (C, M)) * np.where(rng.random((C, M)) < 0.6, 0, 1)
    x = (x + (np.iinfo(dtype).min // 2 if dtype.kind == "i" else 0)).astype(dtype)
    ref = entropy.layout_choices(x, name="t", axis=0, prune=False, chunk_size=16)
    want = entropy.best_layout(ref)
    got = entropy.choose_layout(x, name="t", axis=0, chunk_size=16)
    assert (got.name, got.total_bytes) == (want.name, want.total_bytes)
    assert want.name != "single" or len(ref) > 1


def _check_floors_and_certain_streams(x: np.ndarray, o: dict) -> None:
    """Every layout of the reference sized at once (one batch): floors at most its bytes, streams taken from the
    sizes equal to set_stream's plans."""
    try:
        ref = entropy.layout_choices(x, name="t", axis=0, prune=False, clusters=(2, 3), **o)
    except entropy.EntropyError:
        return
    cands = [(k, c) for k, c in ref.items() if k != "single"]
    if not cands:
        return
    tc = CC.tensor_counts(x, 0)
    opts = CodecOptions.of(**o)
    run_value = tc.value_min + int(np.argmax(tc.pooled()))
    batch = SetBatch(tc, [(np.asarray(c.channel_map), len(c.streams)) for _, c in cands],
                     mode_lists=row_sets.group_modes(opts), max_code_length=opts.max_code_length,
                     chunk_size=opts.chunk_size, run_value=run_value, escapes=opts.escape)
    for i, ((name, c), (floors, bare)) in enumerate(zip(cands, batch.floors())):
        fixed = entropy.tensor_record_bytes("t", x.ndim, [], layout=c.layout, n_channels=x.shape[0])
        assert layout_floor(floors, bare) + fixed <= c.total_bytes, name
        for j, s in enumerate(c.streams):
            assert bare[j] <= floors[j] and bare[j] <= s.payload_bytes + s.index_bytes + entropy.stream_record_bytes(
                s.params)
        for j, sure in enumerate(batch.streams(i)):
            if sure is not None:  # taken without planning: the plan set_stream makes
                params, codebook, payload_bits = sure
                s = c.streams[j]
                assert (params, payload_bits) == (s.params, s.payload_bits), (name, j)
                assert np.array_equal(codebook.lengths, s.codebook.lengths)
                assert codebook.to_bytes() == s.codebook.to_bytes()
                assert codebook.serialized_bits == 8 * len(codebook.to_bytes())


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 6), _OPTIONS, st.integers(0, 2**31 - 1))
def test_floors_bound_every_layout_and_certain_streams_are_the_codecs(kind, options, seed):
    rng = np.random.default_rng(seed)
    _check_floors_and_certain_streams(_tensor(rng, kind), _opts(options))


@pytest.mark.parametrize("cells", [0, 2000])
def test_the_search_is_exact_where_rows_histograms_are_not_kept(tmp_path, monkeypatch, cells):
    """Tensors whose rows' histograms of pairs and run symbols are not kept (too many rows x symbols): sets are
    sized from the parts of the layouts' common refinement, set by set, or (one row each) from the rows themselves
    - the same picks and sizes, and files that code to the planned bytes."""
    from entropy.layout import bounds

    monkeypatch.setattr(CC, "MAX_COUNT_CELLS", cells)
    monkeypatch.setattr(bounds, "MAX_COUNT_CELLS", cells)
    rng = np.random.default_rng(cells)
    for trial in range(24):
        x = _tensor(rng, trial % 7)
        o = _opts({"max_code_length": [3, 6, 12][trial % 3], "chunk_size": [2, 16, 4096][trial % 3],
                   "group": ["auto", 1, 2][(trial // 3) % 3], "mode": "auto"})
        _check_floors_and_certain_streams(x, o)
        try:
            ref = entropy.layout_choices(x, name="t", axis=0, prune=False, clusters=(2, 3), **o)
        except entropy.EntropyError:
            continue
        for variant in (dict(best_only=True), dict(prune=True)):
            got = entropy.layout_choices(x, name="t", axis=0, clusters=(2, 3), **variant, **o)
            assert all(c.total_bytes == ref[k].total_bytes for k, c in got.items()), (trial, variant)
            best = entropy.best_layout(got)
            want = entropy.best_layout(ref)
            assert (best.name, best.total_bytes) == (want.name, want.total_bytes)
        for name in ref:  # every layout asked for: the reference's size, and streams that code to it
            want = entropy.layout_choices(x, name="t", axis=0, layout=name, prune=False, **o)[name]
            plan = entropy.plan_file({"t": x}, channel_axis=0, layout=name, clusters=(2, 3), **o)
            assert plan.tensors[0].choice.total_bytes == want.total_bytes, (trial, name)
            assert entropy.write_plan(plan, tmp_path / "t.hqt").file_bytes == plan.file_bytes
            assert np.array_equal(entropy.load_tensor(tmp_path / "t.hqt", "t"), x)


@pytest.mark.parametrize("group", ["auto", 1, 2])
def test_stored_streams_are_sized_from_counts_and_only_where_auto_may_store(group):
    """Uniform channels of 16 values beside skewed ones: with ``group="auto"`` the channel and cluster layouts store
    the uniform ones (no code is smaller than 4 bits per value), the bounds take those streams without planning
    them (the codec's stored plan), and the search picks what sizing every layout picks; groups 1 and 2 never
    store."""
    rng = np.random.default_rng(8)
    C, M = 12, 1000
    x = np.where(np.arange(C)[:, None] % 2 == 0, rng.integers(0, 16, (C, M)),
                 np.minimum(rng.geometric(0.4, (C, M)) - 1, 15)).astype(np.uint8)
    ref = entropy.layout_choices(x, name="t", axis=0, prune=False, clusters=(2, 4), group=group)
    modes = {s.params.mode for c in ref.values() for s in c.streams}
    assert ("stored" in modes) == (group == "auto"), modes
    if group == "auto":
        assert [s.params.mode for s in ref["channel"].streams[::2]] == ["stored"] * (C // 2)
    got = entropy.choose_layout(x, name="t", axis=0, clusters=(2, 4), group=group)
    want = entropy.best_layout(ref)
    assert (got.name, got.total_bytes) == (want.name, want.total_bytes)
    fast = entropy.layout_choices(x, name="t", axis=0, clusters=(2, 4), group=group)
    assert all(c.total_bytes == ref[k].total_bytes for k, c in fast.items())
    _check_floors_and_certain_streams(x, {"group": group})
    tc = CC.tensor_counts(x, 0)
    opts = CodecOptions.of(group=group)
    batch = SetBatch(tc, [(np.arange(C), C)], mode_lists=row_sets.group_modes(opts), max_code_length=12,
                     chunk_size=opts.chunk_size, run_value=int(np.argmax(tc.pooled())) + tc.value_min, escapes=True)
    sure = batch.streams(0)
    stored = [j for j, s in enumerate(sure) if s is not None and s[0].stored]
    assert stored == (list(range(0, C, 2)) if group == "auto" else [])


def test_the_search_builds_fewer_layouts_and_still_sizes_them_exactly():
    from analysis.benchmarks.container import activation

    a = activation()
    ref = entropy.layout_choices(a, axis=0, prune=False)
    fast = entropy.layout_choices(a, axis=0, best_only=True)
    assert set(fast) < set(ref) and "single" in fast
    assert entropy.best_layout(fast).total_bytes == entropy.best_layout(ref).total_bytes
    assert all(c.total_bytes == ref[k].total_bytes for k, c in fast.items())


# ---- compiled pieces against plain references --------------------------------------------------------------------


def test_code_sizes_are_the_codebooks():
    rng = np.random.default_rng(0)
    for trial in range(400):
        A = int(rng.integers(1, 300))
        c = [rng.integers(0, 5, A), (rng.geometric(0.3, A) ** 3) * (rng.random(A) < 0.5),
             np.floor(2.0 ** rng.uniform(0, 30, A)).astype(np.int64) * (rng.random(A) < 0.7)][trial % 3]
        c = np.asarray(c, dtype=np.int64)
        L = int(rng.integers(1, 16))
        got = size_rows(np.concatenate([c, rng.integers(0, 9, 3)])[None], np.array([A]), L, keep_lengths=True)
        present = int(np.count_nonzero(c))
        assert got["present"][0] == present and got["total"][0] == c.sum()
        if present > 1 << L:
            assert got["payload"][0] == -1 and got["floor"][0] <= shannon_entropy(c) * c.sum()
            continue
        lens = code_lengths(c, L)
        cb = Codebook(lens, max_length=L)
        assert np.array_equal(got["lengths"][0, :A], lens)
        assert got["payload"][0] == got["floor"][0] == int(np.dot(c, lens.astype(np.int64)))
        assert got["table"][0] == len(cb.to_bytes()) and got["longest"][0] == int(lens.max(initial=0))
        assert int(rle_token_bytes(lens, lens.size, np.zeros(0, np.uint8))) == len(rle_tokens(lens))


def _lloyd_reference(h, labels, k, L, rounds):
    """Lloyd rounds as cluster_labels describes them, in plain numpy."""
    labels = labels.copy()
    for _ in range(rounds):
        sums = np.stack([h[labels == j].sum(axis=0) for j in range(k)])
        try:
            lens = np.stack([code_lengths(s, L) for s in sums]).astype(np.int64)
        except entropy.CodebookError:
            lens = np.stack([code_lengths(s, None) for s in sums]).astype(np.int64)
        cost_len = np.where(lens > 0, lens, L + 4)
        cost_len[sums.sum(axis=1) == 0] = 1 << 24
        new = np.argmin(h @ cost_len.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def test_clustering_rounds_follow_their_definition():
    from entropy.layout.kernels import csr_rows, lloyd_labels

    rng = np.random.default_rng(1)
    for _ in range(60):
        C, A, k, L = int(rng.integers(2, 40)), int(rng.integers(2, 300)), int(rng.integers(1, 9)), int(
            rng.choice([3, 6, 12]))
        h = rng.integers(0, 3, (C, A)) * rng.integers(0, 50, (C, 1)) * (rng.random((C, A)) < 0.3)
        h[:, 0] += 1  # no empty row
        start = rng.integers(0, k, C)
        got = lloyd_labels(csr_rows(h), A, start, k, L, L + 4, 5)
        assert np.array_equal(got, _lloyd_reference(h, start, k, L, 5))


def test_many_channels_are_clustered_on_a_sample_and_each_goes_to_its_cheapest_code():
    rng = np.random.default_rng(2)
    C = row_sets.SAMPLE_ROWS + 700
    x = np.round(rng.laplace(0, np.exp(rng.normal(0, 0.7, (C, 1))), (C, 40))).astype(np.int8)
    tc = CC.tensor_counts(x, 0)
    labels = row_sets.cluster_labels(tc, 4, 12)
    assert np.array_equal(labels, row_sets.cluster_labels(CC.tensor_counts(x, 0), 4, 12))  # deterministic
    codes = [code_lengths(tc.counts[labels == j].sum(axis=0), 12) for j in range(labels.max() + 1)]
    # (every channel's code is no costlier for it than the codes fitted on the sample; those are close to these)
    costs = np.stack([tc.counts @ np.where(c > 0, c, 16).astype(np.int64) for c in codes], axis=1)
    assert np.mean(costs[np.arange(C), labels] <= costs.min(axis=1) * 1.02) > 0.95
    assert entropy.choose_layout(x, axis=0).layout == "cluster"


def test_one_stream_per_channel_is_tried_up_to_a_number_of_channels():
    rng = np.random.default_rng(7)
    for C in (MAX_CHANNEL_STREAMS, MAX_CHANNEL_STREAMS + 1):
        x = rng.integers(0, 3, (C, 3)).astype(np.uint8)
        sized = entropy.layout_choices(x, axis=0, prune=False, clusters=(2,))
        assert ("channel" in sized) == (C <= MAX_CHANNEL_STREAMS)
    forced = entropy.layout_choices(x, axis=0, layout="channel")["channel"]  # asked for: still built
    assert len(forced.streams) == C and forced.total_bytes > entropy.choose_layout(x, axis=0).total_bytes


def test_channel_entropies_to_the_last_bit():
    rng = np.random.default_rng(3)
    for _ in range(50):
        c = rng.integers(0, 3, (int(rng.integers(1, 20)), int(rng.integers(1, 2000)))) * rng.integers(
            0, 10 ** int(rng.integers(1, 8)), (1, 1))
        c[:, 0] += rng.integers(0, 2, c.shape[0])  # (some rows empty, some of one value)
        got = CC.row_entropies(c)
        want = [shannon_entropy(r) for r in c]
        assert [(float(g), np.signbit(g)) for g in got] == [(w, np.signbit(w)) for w in want]


def test_value_counts_and_rows_counted_once():
    rng = np.random.default_rng(4)
    x = rng.integers(-50, 60, (37, 91)).astype(np.int16)
    x[5] = 7
    tc = CC.tensor_counts(x, 0)
    want = np.stack([np.bincount(r - x.min(), minlength=int(x.max() - x.min() + 1)) for r in x.astype(np.int64)])
    assert np.array_equal(tc.counts, want)
    assert np.array_equal(tc.counts_of([3, 5, 36]), want[[3, 5, 36]])
    assert np.array_equal(tc.row_min, x.min(axis=1)) and np.array_equal(tc.row_max, x.max(axis=1))
    assert np.array_equal(tc.pooled(), want.sum(axis=0))
    key = tc.window(group=2, chunk_size=16)
    part = CC.row_histograms(tc, key, rows=np.array([4, 9]))
    assert np.array_equal(part, symbol_histograms(x[[4, 9]], key))
    assert np.array_equal(CC.row_histograms(tc, key), symbol_histograms(x, key))


@pytest.mark.parametrize("M", [1, 7, 64, 301])
def test_count_groups_is_the_sum_of_rows(M):
    rng = np.random.default_rng(M)
    x = np.where(rng.random((23, M)) < 0.7, 0, rng.integers(0, 9, (23, M))).astype(np.uint8)
    rows = np.array([0, 3, 4, 22, 9, 10])
    dest = np.array([0, 0, 1, 2, 1, 2])
    for p in (CodecParams(group=1, max_code_length=12, chunk_size=16, value_min=0, value_range=9),
              CodecParams(group=2, max_code_length=12, chunk_size=16, value_min=0, value_range=9),
              CodecParams(group=1, max_code_length=12, chunk_size=16, value_min=0, value_range=9, runs=16),
              CodecParams(group=1, max_code_length=12, chunk_size=16, value_min=1, value_range=8, escape_min=0,
                          escape_range=9)):
        per_row, _ = count_rows(x, p)
        got, bad = count_groups(x, p, rows, dest, 3)
        assert bad == -1
        want = np.stack([per_row[rows[dest == g]].sum(axis=0) for g in range(3)])
        assert np.array_equal(got, want), p.mode
    p = CodecParams(group=1, max_code_length=12, chunk_size=16, value_min=0, value_range=8, runs=16)
    y = np.minimum(x, 7)
    y[9, M - 1] = 8  # outside the window: reported at its place in the whole array
    assert count_groups(y, p, rows, dest, 3)[1] == 9 * M + M - 1


@pytest.mark.parametrize("ks", [(1, 3, 5), (2, 700), (7,)])
def test_set_value_counts_are_the_sums_of_their_rows(ks):
    """The value counts of every set of several layouts (summed by parts where they are fewer than the rows):
    each the sum of its rows' counts."""
    rng = np.random.default_rng(len(ks))
    C = 1500
    x = rng.integers(-3, 4 + rng.integers(0, 30, (C, 1)), (C, 20)).astype(np.int8)
    tc = CC.tensor_counts(x, 0)
    layouts = [(rng.permutation(np.arange(C) % k), k) for k in ks]
    base = np.concatenate([[0], np.cumsum(ks)])
    got = _set_sums(tc, layouts, base, int(base[-1]))
    want = np.stack([tc.counts[lab == j].sum(axis=0) for lab, k in layouts for j in range(k)])
    assert np.array_equal(got, want)


def test_a_planned_stream_is_the_codecs_and_checks_its_window():
    rng = np.random.default_rng(5)
    x = rng.integers(3, 12, 5000).astype(np.int16)
    enc = entropy.encode(x, chunk_size=256)
    p, cb = enc.params, enc.codebook
    planned = prepare_planned(x, p, cb, enc.accounting.payload_bits).run()
    assert planned.payload == enc.payload and np.array_equal(planned.chunk_bits, enc.chunk_bits)
    assert prepare_encode(x, params=p, codebook=cb).accounting.payload_bits == planned.accounting.payload_bits
    y = x.copy()
    y[77] = int(p.value_min + p.value_range)
    with pytest.raises(SymbolError, match="outside the window"):
        prepare_planned(y, p, cb, enc.accounting.payload_bits)
    with pytest.raises(entropy.errors.StreamError, match="plan said"):
        prepare_planned(x, p, cb, enc.accounting.payload_bits + 1).run()


def test_row_floors_size_each_rows_pair_code_and_bound_its_run_codes():
    from entropy.layout.kernels import row_floors

    rng = np.random.default_rng(6)
    x = np.round(rng.laplace(0, rng.uniform(0.3, 6, (40, 1)), (40, 57))).astype(np.int8)
    x[3] = np.arange(57) % 7  # a row of consecutive pair symbols (runs of equal lengths in its table)
    tc = CC.tensor_counts(x, 0)
    first = tc.row_min - tc.value_min
    R = tc.row_max - tc.row_min + 1
    run_value = tc.value_min + int(np.argmax(tc.pooled()))
    for L in (3, 12):
        f = row_floors(tc.rows, tc.value_min, tc.counts, first, R, run_value - tc.value_min, np.ones(40, bool),
                       np.ones(40, bool), L)
        for r in range(40):
            lo, n = int(tc.row_min[r]), int(R[r])
            pairs = CodecParams(group=2, max_code_length=L, chunk_size=64, value_min=lo, value_range=n)
            h = symbol_histograms(x[r], pairs)[0]
            if np.count_nonzero(h) <= 1 << L:  # the row's pair code, exactly
                lens = code_lengths(h, L)
                assert f["pair_longest"][r] == int(lens.max())
                assert f["pair_bits"][r] == int(np.dot(h, lens.astype(np.int64)))
                assert f["pair_table"][r] == len(Codebook(lens).to_bytes())
            else:  # floors
                assert f["pair_longest"][r] < 0
                lens = code_lengths(h, None)
                assert f["pair_bits"][r] <= int(np.dot(h, lens.astype(np.int64)))
                if int(lens.max()) <= 24:
                    assert f["pair_table"][r] <= len(Codebook(lens).to_bytes())
            if lo <= run_value < lo + n:
                for runs in (16, 64):
                    q = CodecParams(group=1, max_code_length=16, chunk_size=64, value_min=lo, value_range=n,
                                    runs=runs, run_symbol=run_value - lo)
                    hr = symbol_histograms(x[r], q)[0]
                    assert f["runs_bits"][r] <= int(np.dot(hr, code_lengths(hr, None).astype(np.int64)))
