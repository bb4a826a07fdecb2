"""Choosing how a tensor is split into coded streams (its layout), from exact closed-form sizes.

With a channel axis, a tensor is a set of channel rows (:mod:`entropy.layout.channels`); a layout assigns every row to
one of K streams, each coded with its own canonical Huffman code in the symbol mode that makes it smallest, and
stores the rows of a stream concatenated in channel order (FORMAT.md §4.2):

``single``    one stream (without an axis: the values in C order; with one: the channel rows in order), chosen by
              the codec exactly as :func:`entropy.encode` chooses (:func:`entropy.codec.streams.prepare_encode`);
``channel``   one stream per channel;
``bitwidth``  one stream per group of channels with the same nominal bit width (the tensor's ``bits`` array);
``cluster``   K streams shared by clusters of similar channels (Lloyd iterations on exact payload bits, on the
              value histograms or on those of the symbols the tensor's best mode codes); the channel -> stream
              map is stored.

Every stream of the channel layouts gets its mode (plain values with rare values escaped where that pays, pairs,
run symbols with 16, 64 or 256 prefixes), escapes and code by exact size (:func:`entropy.layout.row_sets.set_stream`,
through the codec's own decision, :func:`entropy.codec.modes.best_plan`), from per-row histograms of each mode counted
once per tensor (:mod:`entropy.layout.channel_counts`), never from a trial encode. The other sizes (codebook, stream
record, map, index, metadata-array and alignment bytes) come from the format's own arithmetic
(:mod:`entropy.format`). The writer encodes only the chosen layout's streams, from these sizes
(:func:`prepare_streams`).

The search costs about what coding costs (:func:`layout_choices`): every way of coding the sets of all candidate
layouts is sized at once from counts (:class:`entropy.layout.bounds.SetBatch`), which gives each layout a lower
bound - the layouts are built best bound first, and one whose bound is not below the best size found is not built
(``best_only``, what :func:`entropy.save` does) - and gives most streams exactly, without planning them again. Of
more than :data:`~entropy.layout.row_sets.SAMPLE_ROWS` channels the clustering fits its codes on that many, and
one stream per channel is tried up to :data:`MAX_CHANNEL_STREAMS` channels: the search then stays within a few
passes over the tensor.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from entropy.layout.channels import channel_rows, normalize_axis
from entropy.codec.codebook import Codebook
from entropy.codec.options import CodecOptions
from entropy.codec.params import CodecParams
from entropy.codec.streams import EncodedTensor, PreparedEncode, prepare_encode, prepare_planned
from entropy.errors import EntropyError, FormatError
from entropy.layout.bounds import MIN_CODEBOOK_BYTES, SetBatch, layout_floor
from entropy.layout.channel_counts import MAX_COUNT_CELLS, TensorCounts, tensor_counts
from entropy.format import (
    LAYOUTS, align, codebook_record_bytes, index_bytes, map_bytes, payload_bytes, stream_record_bytes,
    tensor_record_bytes,
)
from entropy.codec.lengths import MAX_ALPHABET
from entropy.codec.measures import shannon_entropy
from entropy.codec.modes import RUN_PREFIXES
from entropy.layout.row_sets import cluster_labels, group_modes, mode_histograms, set_stream

__all__ = [
    "CLUSTER_COUNTS",
    "MAX_CHANNEL_STREAMS",
    "LayoutStream",
    "LayoutChoice",
    "layout_choices",
    "best_layout",
    "choose_layout",
    "single_layout",
    "layout_request",
    "prepare_streams",
]

logger = logging.getLogger(__name__)

#: Cluster counts the search tries (each below the channel count).
CLUSTER_COUNTS = (4, 16)
#: ``auto`` tries one stream per channel up to this many channels: beyond, the channels' stream records alone take
#: 40 bytes or more each (e.g. 1.2 MB for 30,000 rows), and bounding that layout would cost more than it can save
MAX_CHANNEL_STREAMS = 4096
_PLAIN_REQUESTS = frozenset(("auto",) + LAYOUTS)


@dataclass(frozen=True, eq=False, slots=True)
class LayoutStream:
    """One planned stream of a layout: its parameters, code and exact payload size; ``channels`` are its rows
    (None: the tensor's values in stream order, ``single`` layout); ``source`` holds a ready encode when there is
    one."""

    params: CodecParams
    codebook: Codebook
    payload_bits: int
    n_values: int
    channels: np.ndarray | None = None
    source: PreparedEncode | EncodedTensor | None = None

    @property
    def index_bytes(self) -> int:
        return index_bytes(self.params, self.n_values)

    @property
    def payload_bytes(self) -> int:
        return payload_bytes(self.payload_bits)


@dataclass(frozen=True, eq=False, slots=True)
class LayoutChoice:
    """A layout of one tensor with its exact size in the file, in bytes (FORMAT.md §11's attribution)."""

    name: str  # e.g. "single", "channel", "bitwidth", "cluster16"
    layout: str  # one of format.LAYOUTS
    axis: int | None
    n_channels: int
    streams: tuple[LayoutStream, ...]
    channel_map: np.ndarray | None  # stream of each channel (layouts other than single)
    record_bytes: int  # the tensor record: streams, map and metadata arrays included
    map_bytes: int
    codebook_bytes: int  # codebook records (4-byte length + table), identical ones counted once
    index_bytes: int
    payload_bytes: int
    padding_bytes: int
    n_values: int
    entropy_bits: float  # order-0 entropy of the tensor's values, bits per value
    payload_bits: int

    @property
    def total_bytes(self) -> int:
        """Everything the tensor adds to a file (with its codebooks stored for it alone)."""
        return self.record_bytes + self.codebook_bytes + self.index_bytes + self.payload_bytes + self.padding_bytes

    @property
    def avg_code_length(self) -> float:
        """Payload bits per value (side information excluded)."""
        return self.payload_bits / self.n_values if self.n_values else 0.0

    @property
    def bits_per_value(self) -> float:
        """Total bits per value, side information included."""
        return 8.0 * self.total_bytes / self.n_values if self.n_values else 0.0

    def as_row(self) -> dict:
        return {
            "layout": self.name,
            "n_codebooks": len(self.streams),
            "groups": [s.params.group for s in self.streams],
            "record_bytes": self.record_bytes,
            "map_bytes": self.map_bytes,
            "codebook_bytes": self.codebook_bytes,
            "index_bytes": self.index_bytes,
            "payload_bytes": self.payload_bytes,
            "padding_bytes": self.padding_bytes,
            "total_bytes": self.total_bytes,
            "bits_per_value": self.bits_per_value,
        }


def _assemble(
    name: str, layout: str, tensor: str, shape: tuple[int, ...], axis: int | None, streams: list[LayoutStream],
    channel_map: np.ndarray | None, arrays: Mapping[str, np.ndarray] | None, entropy: float,
) -> LayoutChoice:
    n_channels = shape[axis] if axis is not None else 1
    rec = tensor_record_bytes(tensor, len(shape), [s.params for s in streams], layout=layout,
                              n_channels=n_channels, arrays=arrays)
    seen: set[bytes] = set()
    cb_bytes = idx = pay = bits = 0
    for s in streams:  # (one pass: files of many small tensors plan tens of thousands of these)
        b = s.codebook.to_bytes()
        if b not in seen:  # the file stores identical codebooks once
            seen.add(b)
            cb_bytes += codebook_record_bytes(b)
        idx += s.index_bytes
        pay += payload_bytes(s.payload_bits)
        bits += s.payload_bits
    return LayoutChoice(
        name=name, layout=layout, axis=axis, n_channels=n_channels, streams=tuple(streams), channel_map=channel_map,
        record_bytes=rec, map_bytes=map_bytes(layout, n_channels, len(streams)), codebook_bytes=cb_bytes,
        index_bytes=idx, payload_bytes=pay, padding_bytes=(align(idx) - idx) + (align(pay) - pay),
        n_values=math.prod(shape), entropy_bits=entropy, payload_bits=bits,
    )


def single_layout(
    values: np.ndarray | EncodedTensor | PreparedEncode, options: CodecOptions | None = None, *, name: str = "tensor",
    axis: int | None = None, arrays: Mapping[str, np.ndarray] | None = None, rows: np.ndarray | None = None,
) -> LayoutChoice:
    """The ``single`` layout (one code) of ``values`` coded with ``options``, or of an already planned/encoded
    stream; ``group=2`` falls back to single values where pairs cannot apply (:func:`group_modes`). ``rows``: the
    channel rows of ``values`` when already made."""
    if isinstance(values, (EncodedTensor, PreparedEncode)):
        enc, shape, axis = values, tuple(values.shape), None
    else:
        a = np.asarray(values)
        shape = a.shape
        if axis is not None and rows is None:
            rows = channel_rows(a, axis)
        flat = rows.reshape(-1) if axis is not None else a
        opts = CodecOptions.of(options)
        fallback = group_modes(opts)[1:]
        if fallback and a.size and ((int(a.max()) - int(a.min()) + 1) ** 2 > MAX_ALPHABET or opts.chunk_size % 2):
            logger.info("tensor %r: group 2 impossible (alphabet or odd chunk size), using 1", name)
            opts = dataclasses.replace(opts, group=1, mode=fallback[0])
        try:
            enc = prepare_encode(flat, opts)
        except EntropyError as exc:
            raise type(exc)(f"tensor {name!r}: {exc}") from exc
    acct = enc.accounting
    stream = LayoutStream(enc.params, enc.codebook, acct.payload_bits, acct.n_values, source=enc)
    return _assemble("single", "single", name, shape, axis, [stream], None, arrays, acct.entropy_bits)


def layout_request(layout: str) -> tuple[str, int | None]:
    """A layout name (``auto``, one of LAYOUTS, or ``clusterK``) as (layout, K or None); FormatError when it is
    none of them."""
    if isinstance(layout, str):
        if layout in _PLAIN_REQUESTS:
            return layout, None
        m = re.fullmatch(r"cluster(\d+)", layout)
        if m:
            return "cluster", int(m.group(1))
    raise FormatError(f"unknown layout {layout!r}: use auto, {', '.join(LAYOUTS)} or clusterK (e.g. cluster16)")


def layout_choices(
    values: np.ndarray,
    options: CodecOptions | None = None,
    *,
    name: str = "tensor",
    axis: int | None = None,
    arrays: Mapping[str, np.ndarray] | None = None,
    layout: str = "auto",
    clusters: Sequence[int] = CLUSTER_COUNTS,
    prune: bool = True,
    best_only: bool = False,
    **option_fields: object,
) -> dict[str, LayoutChoice]:
    """Every layout of ``values`` the search considers, by name, with exact sizes (see the module docstring).

    ``options``: how every stream is coded (:class:`~entropy.CodecOptions`, or its fields as keyword arguments).
    ``name`` and ``arrays`` (the tensor's metadata arrays, as stored) enter the record size; a ``bits`` array of
    one entry per channel enables ``bitwidth``. ``layout`` restricts the search to one layout (``"clusterK"``:
    K clusters); ``clusters`` are the cluster counts tried. ``prune`` skips ``channel`` when a lower bound shows it
    cannot be the smallest, and takes a stream whose smallest way is certain from the bounds' sizes
    (:class:`~entropy.layout.bounds.SetBatch`); ``prune=False`` builds every layout and plans every stream on its
    own, the reference the bounds are tested against (slow: for tests and checks). ``best_only`` (what
    :func:`choose_layout` and :func:`entropy.save` use) sizes only the layouts that can still be the smallest, best
    bound first: every layout's streams are bounded from counts (:mod:`entropy.layout.bounds`) and a layout is built
    only while its bound is below the best size found; the smallest layout, and its size, are the same as without,
    fewer others are returned. Without an axis (or for an empty tensor) only ``single`` exists.
    Raises FormatError when a requested layout is impossible for this tensor.

    >>> import numpy as np, entropy
    >>> w = (np.arange(1024) % 16 + 16 * (np.arange(1024) // 256)).astype(np.uint8).reshape(4, 256)
    >>> choices = entropy.layout_choices(w, axis=0, max_code_length=10)
    >>> sorted(choices), choices["channel"].total_bytes < choices["single"].total_bytes
    (['channel', 'single'], True)
    >>> entropy.best_layout(choices) is choices["channel"]
    True
    """
    a = np.asarray(values)
    if a.dtype.kind in "iu" and not a.dtype.isnative:  # the codec counts native integers
        a = a.astype(a.dtype.newbyteorder("="))
    opts = CodecOptions.of(options, **option_fields)
    kind, k_req = layout_request(layout)
    kw = dict(max_code_length=opts.max_code_length, chunk_size=opts.chunk_size)
    ax = None if axis is None else normalize_axis(axis, a.ndim, f"tensor {name!r}")
    out: dict[str, LayoutChoice] = {}
    rows = channel_rows(a, ax) if ax is not None else None  # (one copy, shared by every layout)
    if kind in ("auto", "single"):
        out["single"] = single_layout(a, opts, name=name, axis=ax, arrays=arrays, rows=rows)
    if kind == "single":
        return out
    why = _no_channel_layouts(a, ax)
    if why:
        if kind != "auto":
            raise FormatError(f"tensor {name!r}: layout {layout} impossible: {why}")
        return out
    tc = tensor_counts(rows, 0)
    C = tc.n_channels
    pooled = tc.pooled()
    entropy = shannon_entropy(pooled)
    run_value = tc.value_min + int(np.argmax(pooled))  # one run value for every set: its runs counted once per row
    search = _Search(tc, opts, run_value, reference=not (prune or best_only))
    cands: list[_Candidate] = []

    def candidate(label: str, lay: str, labels: np.ndarray, k: int, order: int) -> _Candidate:
        c = _Candidate(label, lay, np.asarray(labels, np.int64), k, np.asarray(labels, np.int64), order)
        cands.append(c)
        return c

    if kind == "bitwidth" or kind == "auto":
        bits = (arrays or {}).get("bits")
        ok = bits is not None and np.ndim(bits) == 1 and np.size(bits) == C and np.asarray(bits).dtype.kind in "iuf"
        b = np.asarray(bits, dtype=np.float64) if ok else None
        if ok and np.isfinite(b).all():
            widths, inverse = np.unique(b, return_inverse=True)
            if widths.size > 1 or kind == "bitwidth":
                candidate("bitwidth", "bitwidth", inverse, widths.size, 0)
        elif kind == "bitwidth":
            raise FormatError(f"tensor {name!r}: layout bitwidth needs a 'bits' array with one finite entry per "
                              f"channel ({C})")
    ks = []
    if kind == "cluster" or kind == "auto":
        ks = [k_req] if k_req is not None else [k for k in clusters if k < C]
        for k in ks:
            if k < 1:
                raise FormatError(f"tensor {name!r}: cluster count must be at least 1, got {k}")
    # cluster on the value histograms, and on the symbols of the mode that one stream of all the rows would use
    # (pairs or run symbols, when counted per row): the smaller result is kept
    by_values: dict[int, np.ndarray] = {}
    for i, k in enumerate(ks):
        labels = cluster_labels(tc, min(k, C), opts.max_code_length)
        by_values[k] = labels
        if not (labels.max() < 1 and kind == "auto"):
            candidate(f"cluster{k}", "cluster", labels, int(labels.max()) + 1, 1 + 2 * i)
    if kind == "channel" or (kind == "auto" and 1 < C <= MAX_CHANNEL_STREAMS):
        candidate("channel", "channel", np.arange(C), C, 2 + 2 * len(ks))
    search.bound([c for c in cands if not search.own_batch(c)], whole=bool(ks))
    h = search.whole_mode_histograms() if ks else None
    if h is not None:
        for i, k in enumerate(ks):
            labels = cluster_labels(tc, min(k, C), opts.max_code_length, counts=h)
            if not (labels.max() < 1 and kind == "auto") and not np.array_equal(labels, by_values[k]):
                candidate(f"cluster{k}", "cluster", labels, int(labels.max()) + 1, 2 + 2 * i)
    cands.sort(key=lambda c: c.order)
    built: dict[int, LayoutChoice] = {}

    def build(c: _Candidate, limit: float = float("inf"), ties_win: bool = False) -> LayoutChoice | None:
        fixed = tensor_record_bytes(name, a.ndim, [], layout=c.layout, n_channels=C, arrays=arrays)
        st = search.streams(c, limit=limit, fixed=fixed, ties_win=ties_win)
        return None if st is None else _assemble(c.label, c.layout, name, a.shape, ax, st, c.channel_map, arrays,
                                                 entropy)

    if kind == "auto" and best_only:
        # best first: each layout's lower bound from counts; a layout is built only while it can still be the
        # smallest (ties go to the earlier layout, as best_layout picks them)
        best = out["single"]
        best_key = -1
        fixed = {c.order: tensor_record_bytes(name, a.ndim, [], layout=c.layout, n_channels=C, arrays=arrays)
                 for c in cands}
        search.bound(cands)
        lower = {c.order: fixed[c.order] + layout_floor(*search.floors(c)) for c in cands}
        for c in sorted(cands, key=lambda c: (lower[c.order], c.order)):
            if lower[c.order] > best.total_bytes or (lower[c.order] == best.total_bytes and c.order > best_key):
                continue
            got = build(c, limit=best.total_bytes, ties_win=c.order < best_key)
            if got is not None:
                built[c.order] = got
                if got.total_bytes < best.total_bytes or (got.total_bytes == best.total_bytes and c.order < best_key):
                    best, best_key = got, c.order
    else:
        for c in cands:
            limit = float("inf")
            if c.label == "channel" and kind == "auto" and prune and (out or built):
                # one code per channel costs a stream record, an index and a codebook per channel: built only while
                # a lower bound (the exact bytes of the channels coded so far + the fewest of every other one) stays
                # below the best so far
                limit = min(x.total_bytes for x in [*out.values(), *built.values()])
            got = build(c, limit=limit)
            if got is not None:
                built[c.order] = got
    for c in cands:  # in the order of the candidates: equal sizes go to the first
        got = built.get(c.order)
        if got is not None and (c.label not in out or got.total_bytes < out[c.label].total_bytes):
            out[c.label] = got
    if kind != "auto" and not out:
        raise FormatError(f"tensor {name!r}: layout {layout} cannot code these values")
    return out


@dataclass(frozen=True, eq=False)
class _Candidate:
    """A layout to size: its name, the set (stream) of every channel and the map the file stores."""

    label: str
    layout: str
    labels: np.ndarray  # stream of each channel, 0..k-1, every stream non-empty
    k: int
    channel_map: np.ndarray
    order: int  # position among the candidates (ties go to the first)

    def groups(self) -> list[np.ndarray]:
        if self.k == self.labels.size:
            return [np.array([c]) for c in range(self.k)] if np.array_equal(self.labels, np.arange(self.k)) else \
                [np.flatnonzero(self.labels == j) for j in range(self.k)]
        order = np.argsort(self.labels, kind="stable")
        return np.split(order, np.cumsum(np.bincount(self.labels, minlength=self.k))[:-1])


class _Search:
    """The streams of one tensor's candidate layouts: every way of coding their sets sized at once
    (:class:`~entropy.layout.bounds.SetBatch`: lower bounds, and the streams whose smallest way is certain), the
    other streams planned set by set (:func:`set_stream`, each set once)."""

    def __init__(self, tc: TensorCounts, opts: CodecOptions, run_value: int, reference: bool = False) -> None:
        self.tc, self.opts, self.run_value = tc, opts, run_value
        self.reference = reference  # plan every stream with set_stream (what the bounds are tested against)
        self.mode_lists = group_modes(opts)
        self._plans: dict[bytes, LayoutStream | None] = {}
        self._batches: dict[int, tuple[SetBatch, int]] = {}
        self._floors: dict[int, list] = {}
        self._whole = None  # (candidate, batch, index) of one stream of all the rows

    def stream(self, ch: np.ndarray) -> LayoutStream | None:
        """The stream of the rows ``ch`` (increasing), or None when no mode codes them."""
        key = ch.tobytes()
        if key not in self._plans:
            plan = None
            for modes in self.mode_lists:
                plan = set_stream(self.tc, ch, modes=modes, run_value=self.run_value, escapes=self.opts.escape,
                                  max_code_length=self.opts.max_code_length, chunk_size=self.opts.chunk_size)
                if plan is not None:
                    break
            self._plans[key] = None if plan is None else LayoutStream(
                plan.params, plan.codebook, plan.payload_bits, int(ch.size) * self.tc.row_length, channels=ch)
        return self._plans[key]

    def streams(self, c: _Candidate, limit: float = float("inf"), fixed: int = 0,
                ties_win: bool = False) -> list[LayoutStream] | None:
        """The streams of a candidate; None when a set has no mode, or (with a finite ``limit``: branch and bound)
        as soon as the exact bytes of the streams made so far (without their codebooks, which may be shared) plus
        the floors of the rest (:func:`~entropy.layout.bounds.layout_floor`) and ``fixed`` reach ``limit`` (pass
        it, when ``ties_win``)."""
        groups = c.groups()
        certain = [None] * len(groups)
        bounded = limit < float("inf")
        if not self.reference:
            self.bound([c])
            batch, li = self._batches[c.order]
            certain = batch.streams(li)
        if bounded:
            floors, bare = self.floors(c)
            rest_f, rest_b = int(floors.sum()), int(bare.sum())
        got = []
        made = 0
        for j, ch in enumerate(groups):
            if certain[j] is not None:
                params, codebook, bits = certain[j]
                s = LayoutStream(params, codebook, bits, int(ch.size) * self.tc.row_length, channels=ch)
            else:
                s = self.stream(ch)
            if s is None:
                return None
            got.append(s)
            if bounded:
                made += s.payload_bytes + s.index_bytes + stream_record_bytes(s.params)
                rest_f -= int(floors[j])
                rest_b -= int(bare[j])
                bound = made + max(rest_f, rest_b + MIN_CODEBOOK_BYTES) + fixed
                if bound > limit or (bound == limit and not ties_win):
                    return None
        return got

    def floors(self, c: _Candidate) -> tuple[np.ndarray, np.ndarray]:
        """The :meth:`~entropy.layout.bounds.SetBatch.floors` of a candidate's sets."""
        self.bound([c])
        batch, li = self._batches[c.order]
        if id(batch) not in self._floors:
            self._floors[id(batch)] = batch.floors()
        return self._floors[id(batch)][li]

    def own_batch(self, c: _Candidate) -> bool:
        """Whether a candidate is sized in a batch of its own: one stream per channel of many channels (its sets
        are the rows: no sums)."""
        return c.k == self.tc.n_channels > _SHARED_BATCH_CHANNELS and np.array_equal(c.labels, np.arange(c.k))

    def bound(self, cands: list[_Candidate], whole: bool = False) -> None:
        """Size every way of coding the sets of ``cands`` at once (and of one stream of all the rows, ``whole``);
        a candidate of :meth:`own_batch` apart."""
        if self.reference:
            return
        todo = [c for c in cands if c.order not in self._batches]
        own = [c for c in todo if self.own_batch(c)]
        shared = [c for c in todo if c not in own]
        C = self.tc.n_channels
        if whole and self._whole is None:
            shared.insert(0, _Candidate("whole", "single", np.zeros(C, np.int64), 1, np.zeros(C, np.int64), -1))
        for batch in (shared, *([c] for c in own)):
            if batch:
                sb = SetBatch(self.tc, [(c.labels, c.k) for c in batch], mode_lists=self.mode_lists,
                              max_code_length=self.opts.max_code_length, chunk_size=self.opts.chunk_size,
                              run_value=self.run_value, escapes=self.opts.escape)
                for i, c in enumerate(batch):
                    if c.order < 0:
                        self._whole = (c, sb, i)
                    else:
                        self._batches[c.order] = (sb, i)

    def whole_mode_histograms(self) -> np.ndarray | None:
        """Per-row histograms of the symbols of the mode one stream of all the rows uses (pairs or run symbols), to
        cluster on; None for plain symbols, or when that mode's histograms are not counted per row (then the
        stream is not planned at all)."""
        tc, opts = self.tc, self.opts
        T, C = tc.value_range, tc.n_channels
        pairs = "pairs" in opts.modes and opts.chunk_size % 2 == 0 and C * T * T <= MAX_COUNT_CELLS
        runs = "runs" in opts.modes and C * min(RUN_PREFIXES) * T <= MAX_COUNT_CELLS
        if not (pairs or runs):
            return None
        if self._whole is not None:
            c, sb, i = self._whole
            got = sb.streams(i)[0]
            params = got[0] if got is not None else None
        else:
            params = None
        if params is None:
            s = self.stream(np.arange(C))
            params = s.params if s is not None else None
        return mode_histograms(tc, params) if params is not None else None


#: one stream per channel is sized in the same batch as the other layouts up to this many channels
_SHARED_BATCH_CHANNELS = 1024


def _no_channel_layouts(a: np.ndarray, axis: int | None) -> str | None:
    """Why only the single layout applies, or None."""
    if axis is None:
        return "no channel axis"
    if a.size == 0:
        return "empty tensor"
    if a.dtype.kind not in "iu":
        return f"dtype {a.dtype}"
    span = int(a.max()) - int(a.min()) + 1
    if span > MAX_ALPHABET or a.shape[axis] * span > MAX_COUNT_CELLS:
        return f"{a.shape[axis]} channels x {span} values are too many to count per channel"
    return None


def best_layout(choices: Mapping[str, LayoutChoice]) -> LayoutChoice:
    """The choice with the fewest bytes (ties: the first, i.e. the simpler one)."""
    if not choices:
        raise FormatError("no layout to pick from")
    return min(choices.values(), key=lambda c: c.total_bytes)


def choose_layout(values: np.ndarray, **kwargs) -> LayoutChoice:
    """The smallest layout of ``values`` (:func:`layout_choices` arguments; only the layouts that can be the
    smallest are built, ``best_only``).

    >>> import numpy as np, entropy
    >>> w = (np.arange(1024) % 16 + 16 * (np.arange(1024) // 256)).astype(np.uint8).reshape(4, 256)
    >>> entropy.choose_layout(w, axis=0).layout  # channel c holds the values 16c .. 16c + 15: a code each
    'channel'
    """
    kwargs.setdefault("best_only", True)
    return best_layout(layout_choices(values, **kwargs))


def prepare_streams(values: np.ndarray, choice: LayoutChoice) -> list[PreparedEncode | EncodedTensor]:
    """The codec's plan of every stream of ``choice``, from the search's sizes (nothing counted again: the codec
    checks the values against each stream's window, and the payload against its size while it codes); a stream
    with escapes is planned by the codec again and its sizes compared (FormatError if they differ: that would make
    the file's layout wrong)."""
    out: list[PreparedEncode | EncodedTensor] = []
    rows = None if choice.axis is None else channel_rows(values, choice.axis)
    for j, s in enumerate(choice.streams):
        if s.source is not None:
            out.append(s.source)
            continue
        assert rows is not None and s.channels is not None
        p = s.params
        flat = rows[s.channels].reshape(-1)
        if not p.escape_range:
            out.append(prepare_planned(flat, p, s.codebook, s.payload_bits))
            continue
        enc = prepare_encode(flat, params=p, codebook=s.codebook)  # (p fixes the coding)
        if enc.accounting.payload_bits != s.payload_bits or enc.index_length != s.index_bytes:
            raise FormatError(
                f"{choice.name} stream {j}: the codec gives {enc.accounting.payload_bits} payload bits and "
                f"{enc.index_length} index bytes, the closed form {s.payload_bits} and {s.index_bytes}"
            )
        out.append(enc)
    return out
