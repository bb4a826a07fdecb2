"""Choosing how a tensor is split into coded streams (its layout), from exact closed-form sizes.

With a channel axis, a tensor is a set of channel rows (:mod:`entropy.channels`); a layout assigns every row to
one of K streams, each coded with its own canonical Huffman code (singles or pairs, whichever is smaller for
that stream), and stores the rows of a stream concatenated in channel order (FORMAT.md §4.2):

``single``    one stream (without an axis: the values in C order; with one: the channel rows in order);
``channel``   one stream per channel;
``bitwidth``  one stream per group of channels with the same nominal bit width (the tensor's ``bits`` array);
``cluster``   K streams shared by clusters of similar channels (Lloyd iterations on the exact payload bits);
              the channel -> stream map is stored.

Every size is exact and follows from per-channel histograms (:mod:`entropy.channel_counts`, one pass over the
data), never from a trial encode: payload bits = sum of count x code length; codebook, stream-record, map,
index, metadata-array and alignment bytes from the format's own arithmetic (:mod:`entropy.fileformat`). The
writer encodes the chosen streams and checks that the codec's sizes equal these (:func:`prepare_streams`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from entropy.channels import channel_rows, normalize_axis
from entropy.codebook import Codebook
from entropy.codec import CodecParams, EncodedTensor, PreparedEncode, prepare_encode
from entropy.errors import CodebookError, EntropyError, FormatError
from entropy.fileformat import (
    LAYOUTS, align, codebook_record_bytes, index_bytes, map_bytes, payload_bytes, stream_record_bytes,
    tensor_record_bytes,
)
from entropy.lengths import MAX_ALPHABET
from entropy.measures import payload_bits, shannon_entropy

if TYPE_CHECKING:  # numba-compiled module: imported when counts are needed
    from entropy.channel_counts import TensorCounts

__all__ = [
    "CLUSTER_COUNTS",
    "StreamPlan",
    "LayoutChoice",
    "layout_choices",
    "best_layout",
    "choose_layout",
    "single_layout",
    "prepare_streams",
    "stream_values",
    "cluster_labels",
]

logger = logging.getLogger(__name__)

#: Cluster counts the search tries (each below the channel count).
CLUSTER_COUNTS = (4, 16)
#: Rows shorter than this never get their own pair code in the ``channel`` layout (the table would dominate).
MIN_ROW_FOR_CHANNEL_PAIRS = 16384
#: Largest per-channel histogram (channels x alphabet cells) the search builds; beyond it only ``single``.
MAX_COUNT_CELLS = 1 << 22
_LLOYD_ROUNDS = 5


@dataclass(frozen=True, eq=False)
class StreamPlan:
    """One planned stream: its parameters, code and exact payload size; ``channels`` are its rows (None: the
    tensor's values in stream order, ``single`` layout); ``source`` holds a ready encode when there is one."""

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


@dataclass(frozen=True, eq=False)
class LayoutChoice:
    """A layout of one tensor with its exact size in the file, in bytes (FORMAT.md §11's attribution)."""

    name: str  # e.g. "single", "channel", "bitwidth", "cluster16"
    layout: str  # one of fileformat.LAYOUTS
    axis: int | None
    n_channels: int
    streams: tuple[StreamPlan, ...]
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
    name: str, layout: str, tensor: str, shape: tuple[int, ...], axis: int | None, streams: list[StreamPlan],
    channel_map: np.ndarray | None, arrays: Mapping[str, np.ndarray] | None, entropy: float,
) -> LayoutChoice:
    n_channels = shape[axis] if axis is not None else 1
    rec = tensor_record_bytes(tensor, len(shape), [s.params for s in streams], layout=layout,
                              n_channels=n_channels, arrays=arrays)
    seen: set[bytes] = set()
    cb_bytes = 0
    for s in streams:
        b = s.codebook.to_bytes()
        if b not in seen:  # the file stores identical codebooks once
            seen.add(b)
            cb_bytes += codebook_record_bytes(b)
    idx = sum(s.index_bytes for s in streams)
    pay = sum(s.payload_bytes for s in streams)
    return LayoutChoice(
        name=name, layout=layout, axis=axis, n_channels=n_channels, streams=tuple(streams), channel_map=channel_map,
        record_bytes=rec, map_bytes=map_bytes(layout, n_channels, len(streams)), codebook_bytes=cb_bytes,
        index_bytes=idx, payload_bytes=pay, padding_bytes=(align(idx) - idx) + (align(pay) - pay),
        n_values=math.prod(shape), entropy_bits=entropy, payload_bits=sum(s.payload_bits for s in streams),
    )


def _stream(
    tc: TensorCounts, rows: np.ndarray, modes: Sequence[int], *, max_code_length: int, chunk_size: int
) -> StreamPlan | None:
    """The smallest stream (codebook + stream record + index + payload bytes) of ``rows`` over ``modes``."""
    from entropy.channel_counts import stream_histogram

    best = None
    n = int(rows.size) * tc.row_length
    for g in modes:
        if g == 2 and chunk_size % 2:
            continue
        h = stream_histogram(tc, rows, g)
        if h is None:
            continue
        counts, lo, R = h
        if R**g > MAX_ALPHABET:
            continue
        try:
            cb = Codebook.from_counts(counts, max_code_length)
        except CodebookError:
            continue
        params = CodecParams(group=g, max_code_length=max_code_length, chunk_size=chunk_size, value_min=lo,
                             value_range=R)
        bits = payload_bits(counts, cb.lengths)
        cost = (payload_bytes(bits) + codebook_record_bytes(cb) + index_bytes(params, n)
                + stream_record_bytes(params))
        if best is None or cost < best[0]:
            best = (cost, StreamPlan(params, cb, bits, n, channels=rows))
    return None if best is None else best[1]


def cluster_labels(tc: TensorCounts, k: int, max_code_length: int) -> np.ndarray:
    """Assign channels to at most ``k`` shared codes (Lloyd iterations on the exact payload bits of singles).

    Start from ``k`` equal slices of the channels sorted by entropy and mean; then alternately build each
    cluster's Huffman code and move every channel to the code that costs it the fewest payload bits (a value
    absent from a code is charged ``max_code_length + 4`` bits). Labels are renumbered in order of first
    appearance (the format's canonical order); empty clusters disappear.
    """
    from entropy.channel_counts import channel_entropies
    from entropy.lengths import code_lengths_rows

    C, R = tc.counts.shape
    counts = tc.counts
    # integer matrix products: exact, and numpy runs them without BLAS threads (which spin on busy CPUs)
    tot = np.maximum(counts.sum(axis=1), 1)
    mean = (counts @ np.arange(R, dtype=np.int64)) / tot
    order = np.lexsort((mean, channel_entropies(tc)))
    labels = np.empty(C, dtype=np.int64)
    labels[order] = np.arange(C) * k // C
    penalty = max_code_length + 4
    for _ in range(_LLOYD_ROUNDS):
        onehot = np.zeros((k, C), dtype=np.int64)
        onehot[labels, np.arange(C)] = 1
        sums = onehot @ counts
        lens = code_lengths_rows(sums, max_code_length).astype(np.int64).T  # [R, k]
        cost_len = np.where(lens > 0, lens, penalty)
        cost_len[:, sums.sum(axis=1) == 0] = 1 << 24  # empty cluster: never chosen, no overflow
        new = np.argmin(counts @ cost_len, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    _, first_idx = np.unique(labels, return_index=True)
    remap = np.empty(k, dtype=np.int64)
    remap[labels[np.sort(first_idx)]] = np.arange(first_idx.size)
    return remap[labels]


def single_layout(
    values: np.ndarray | EncodedTensor | PreparedEncode, *, name: str = "tensor", axis: int | None = None,
    arrays: Mapping[str, np.ndarray] | None = None, max_code_length: int = 12, chunk_size: int = 4096,
    group: int | str = "auto",
) -> LayoutChoice:
    """The ``single`` layout (one code) of ``values``, or of an already planned/encoded stream; ``group=2`` falls
    back to 1 where pairs cannot apply."""
    if isinstance(values, (EncodedTensor, PreparedEncode)):
        enc, shape, axis = values, tuple(values.shape), None
    else:
        a = np.asarray(values)
        shape = a.shape
        flat = channel_rows(a, axis).reshape(-1) if axis is not None else a
        g = group
        if g == 2 and a.size and ((int(a.max()) - int(a.min()) + 1) ** 2 > MAX_ALPHABET or chunk_size % 2):
            logger.info("tensor %r: group 2 impossible (alphabet or odd chunk size), using 1", name)
            g = 1
        try:
            enc = prepare_encode(flat, max_code_length=max_code_length, chunk_size=chunk_size, group=g)
        except EntropyError as exc:
            raise type(exc)(f"tensor {name!r}: {exc}") from exc
    acct = enc.accounting
    stream = StreamPlan(enc.params, enc.codebook, acct.payload_bits, acct.n_values, source=enc)
    return _assemble("single", "single", name, shape, axis, [stream], None, arrays, acct.entropy_bits)


def _layout_request(layout: str) -> tuple[str, int | None]:
    m = re.fullmatch(r"cluster(\d+)", layout)
    if m:
        return "cluster", int(m.group(1))
    if layout not in ("auto",) + LAYOUTS:
        raise FormatError(f"unknown layout {layout!r}: use auto, {', '.join(LAYOUTS)} or clusterK (e.g. cluster16)")
    return layout, None


def layout_choices(
    values: np.ndarray,
    *,
    name: str = "tensor",
    axis: int | None = None,
    arrays: Mapping[str, np.ndarray] | None = None,
    max_code_length: int = 12,
    chunk_size: int = 4096,
    group: int | str = "auto",
    layout: str = "auto",
    clusters: Sequence[int] = CLUSTER_COUNTS,
    prune: bool = True,
) -> dict[str, LayoutChoice]:
    """Every layout of ``values`` the search considers, by name, with exact sizes (see the module docstring).

    ``name`` and ``arrays`` (the tensor's metadata arrays, as stored) enter the record size; a ``bits`` array of
    one entry per channel enables ``bitwidth``. ``layout`` restricts the search to one layout (``"clusterK"``:
    K clusters); ``clusters`` are the cluster counts tried. ``prune`` skips ``channel`` when a lower bound shows
    it cannot be the smallest. Without an axis (or for an empty tensor) only ``single`` exists.
    Raises FormatError when a requested layout is impossible for this tensor.
    """
    a = np.asarray(values)
    if a.dtype.kind in "iu" and not a.dtype.isnative:  # the codec counts native integers
        a = a.astype(a.dtype.newbyteorder("="))
    kind, k_req = _layout_request(layout)
    kw = dict(max_code_length=max_code_length, chunk_size=chunk_size)
    ax = None if axis is None else normalize_axis(axis, a.ndim, f"tensor {name!r}")
    out: dict[str, LayoutChoice] = {}
    if kind in ("auto", "single"):
        out["single"] = single_layout(a, name=name, axis=ax, arrays=arrays, group=group, **kw)
    if kind == "single":
        return out
    why = _no_channel_layouts(a, ax)
    if why:
        if kind != "auto":
            raise FormatError(f"tensor {name!r}: layout {layout} impossible: {why}")
        return out
    from entropy.channel_counts import channel_payload_bits, tensor_counts

    want_pairs = group in ("auto", 2) and chunk_size % 2 == 0
    tc = tensor_counts(a, ax, pairs=want_pairs)
    modes = {"auto": (1, 2), 1: (1,), 2: (2, 1)}[group] if group in ("auto", 1, 2) else (1,)
    C, M = tc.n_channels, tc.row_length
    entropy = shannon_entropy(tc.pooled())

    def streams_of(groups: list[np.ndarray], mode_list=modes) -> list[StreamPlan] | None:
        got = []
        for rows in groups:
            if group == 2:  # pairs where possible, else singles
                s = _stream(tc, rows, (2,), **kw) or _stream(tc, rows, (1,), **kw)
            else:
                s = _stream(tc, rows, mode_list, **kw)
            if s is None:
                return None
            got.append(s)
        return got

    if kind == "bitwidth" or kind == "auto":
        bits = (arrays or {}).get("bits")
        ok = bits is not None and np.ndim(bits) == 1 and np.size(bits) == C and np.asarray(bits).dtype.kind in "iuf"
        b = np.asarray(bits, dtype=np.float64) if ok else None
        if ok and np.isfinite(b).all():
            widths, inverse = np.unique(b, return_inverse=True)
            if widths.size > 1 or kind == "bitwidth":
                groups = [np.flatnonzero(inverse == r) for r in range(widths.size)]
                st = streams_of(groups)
                if st is not None:
                    out["bitwidth"] = _assemble("bitwidth", "bitwidth", name, a.shape, ax, st, inverse.astype(np.int64),
                                                arrays, entropy)
        elif kind == "bitwidth":
            raise FormatError(f"tensor {name!r}: layout bitwidth needs a 'bits' array with one finite entry per "
                              f"channel ({C})")
    if kind == "cluster" or kind == "auto":
        ks = [k_req] if k_req is not None else [k for k in clusters if k < C]
        for k in ks:
            if k < 1:
                raise FormatError(f"tensor {name!r}: cluster count must be at least 1, got {k}")
            labels = cluster_labels(tc, min(k, C), max_code_length)
            kk = int(labels.max()) + 1
            if kk < 2 and kind == "auto":
                continue
            st = streams_of([np.flatnonzero(labels == j) for j in range(kk)])
            if st is not None:
                out[f"cluster{k}"] = _assemble(f"cluster{k}", "cluster", name, a.shape, ax, st, labels, arrays,
                                               entropy)
    if kind == "channel" or (kind == "auto" and C > 1):
        channel_modes = modes if M >= MIN_ROW_FOR_CHANNEL_PAIRS else (1,)
        skip = False
        if kind == "auto" and prune and channel_modes == (1,) and out:
            # one code per channel costs a codebook, a stream record and an index per channel: build it only
            # when a lower bound (exact payload of per-channel singles codes + the smallest possible side
            # information) can beat the best so far
            params = CodecParams(group=1, max_code_length=max_code_length, chunk_size=chunk_size, value_min=0,
                                 value_range=1)
            try:
                pay = int(channel_payload_bits(tc, max_code_length).sum())
            except CodebookError:
                pay = 0
            lower = -(-pay // 8) + C * (stream_record_bytes(params) + codebook_record_bytes(b"\0")
                                         + index_bytes(params, M))
            skip = lower >= min(c.total_bytes for c in out.values())
            if skip:
                logger.debug("tensor %r: one code per channel cannot win (>= %d bytes); not built", name, lower)
        if not skip:
            st = streams_of([np.array([c]) for c in range(C)], channel_modes)
            if st is not None:
                out["channel"] = _assemble("channel", "channel", name, a.shape, ax, st, np.arange(C, dtype=np.int64),
                                           arrays, entropy)
    if kind != "auto" and not out:
        raise FormatError(f"tensor {name!r}: layout {layout} cannot code these values")
    return out


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
    """The smallest layout of ``values`` (:func:`layout_choices` arguments)."""
    return best_layout(layout_choices(values, **kwargs))


def stream_values(values: np.ndarray, choice: LayoutChoice, j: int) -> np.ndarray:
    """The values of stream ``j`` of ``choice`` in stream order (flat; a copy unless already contiguous)."""
    s = choice.streams[j]
    if choice.axis is None:
        return np.asarray(values).reshape(-1)
    rows = channel_rows(values, choice.axis)
    return rows.reshape(-1) if s.channels is None else rows[s.channels].reshape(-1)


def prepare_streams(values: np.ndarray, choice: LayoutChoice) -> list[PreparedEncode | EncodedTensor]:
    """The codec's plan of every stream of ``choice``; raises FormatError if its sizes differ from the closed form
    (they never should: that would make the file's layout wrong)."""
    out: list[PreparedEncode | EncodedTensor] = []
    rows = None if choice.axis is None else channel_rows(values, choice.axis)
    for j, s in enumerate(choice.streams):
        if s.source is not None:
            out.append(s.source)
            continue
        assert rows is not None and s.channels is not None
        vals = rows[s.channels].reshape(-1)
        p = s.params
        enc = prepare_encode(vals, max_code_length=p.max_code_length, chunk_size=p.chunk_size, group=p.group,
                             codebook=s.codebook, value_min=p.value_min, value_range=p.value_range)
        if enc.accounting.payload_bits != s.payload_bits or enc.index_length != s.index_bytes:
            raise FormatError(
                f"{choice.name} stream {j}: the codec gives {enc.accounting.payload_bits} payload bits and "
                f"{enc.index_length} index bytes, the closed form {s.payload_bits} and {s.index_bytes}"
            )
        out.append(enc)
    return out
