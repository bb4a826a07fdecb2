"""Coding choices for one quantized tensor and their exact sizes, computed from symbol counts.

A tensor is viewed as channel rows (row ``c`` = every value of channel ``c`` in memory order,
``np.moveaxis(codes, axis, 0).reshape(C, -1)``). A *coding choice* splits the rows into
segments; each segment is the concatenation of its rows in channel order, coded with one
canonical Huffman code (singles, or pairs of consecutive values) and stored as one tensor
entry of an ``.hqt`` file. The choices:

``layer``          one code for the whole tensor;
``channel``        one code per channel (one entry per channel);
``bitwidth``       one code per group of channels with the same nominal bit width;
``clusterK``       K codes shared by clusters of similar channels (assignment stored as a map);
``...-pairs``      the same with pairs of consecutive values coded as one symbol.

Every size is exact and follows in closed form from per-channel counts (one pass over the
data, :func:`tensor_counts`), never from a trial encode:

* payload bits = sum over symbols of count * code length;
* codebook bits = 8 * len(Codebook.to_bytes()) (identical codebooks are stored once);
* index bits = the codec's chunk index for the segment's length;
* record bits = the segment's entry in the file's tensor table plus alignment padding and the
  4-byte codebook record header (from :mod:`entropy.container`'s layout);
* map bits = the channel list of each cluster (only for ``clusterK``; the other layouts follow
  from the channel count or from the per-channel bit widths, which are stored anyway).

:func:`encode_choice` then codes the chosen segments for real, and checks that the codec's
payload bits equal the closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import logging

import numba
import numpy as np

from analysis.errors import AnalysisError
from entropy.codebook import Codebook
from entropy.lengths import code_lengths_rows
from entropy.measures import shannon_entropy

__all__ = [
    "PAIR_RANGE",
    "TensorCounts",
    "Segment",
    "CodingChoice",
    "tensor_counts",
    "channel_rows",
    "pooled_entropy",
    "channel_entropy",
    "coding_choices",
    "best_choice",
    "encode_choice",
    "segment_name",
    "channel_entropies",
    "channel_payload_bits",
    "CLUSTER_COUNTS",
    "reassemble",
    "from_rows",
    "LayerCoding",
    "save_choices",
    "file_entries",
    "load_choice",
]

log = logging.getLogger(__name__)

#: Widest per-channel value span (levels) coded in pairs: 32 levels -> at most 1024 pair symbols.
PAIR_RANGE = 32
#: Rows shorter than this are never given one code per channel in pairs (the table would dominate).
_MIN_ROW_FOR_CHANNEL_PAIRS = 16384
#: Cluster counts tried for the shared-code layouts.
CLUSTER_COUNTS = (16,)
_LLOYD_ROUNDS = 5


# --------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class TensorCounts:
    """Per-channel counts of one integer tensor. All counts are numbers of values (or pairs).

    ``counts[c, v - value_min]``: occurrences of value ``v`` in channel ``c``.
    ``pair_even[c, a * PAIR_RANGE + b]``: pairs ``(x[2i], x[2i+1])`` of row ``c``, with both values
    relative to the row's minimum ``row_min[c]``; ``pair_odd``: pairs ``(x[2i+1], x[2i+2])``
    (only when the row length is odd: then every second row of a concatenation starts at an odd
    offset). ``first``/``last``: first and last value of each row (pairs straddling two rows).
    Pairs are counted only for rows spanning at most ``PAIR_RANGE`` levels (``pair_ok``).
    """

    counts: np.ndarray
    value_min: int
    row_length: int
    row_min: np.ndarray
    row_max: np.ndarray
    first: np.ndarray
    last: np.ndarray
    pair_ok: np.ndarray
    pair_even: np.ndarray | None = None
    pair_odd: np.ndarray | None = None
    shape: tuple[int, ...] = ()
    axis: int | None = None
    dtype: str = "uint8"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_channels(self) -> int:
        return int(self.counts.shape[0])

    @property
    def value_range(self) -> int:
        return int(self.counts.shape[1])

    @property
    def n_values(self) -> int:
        return self.n_channels * self.row_length

    @property
    def has_pairs(self) -> bool:
        return self.pair_even is not None

    def pooled(self) -> np.ndarray:
        """Counts of the whole tensor pooled over its channels (int64 [R])."""
        return self.counts.sum(axis=0)


def channel_rows(codes: np.ndarray, axis: int | None) -> np.ndarray:
    """The tensor as channel rows ``[C, M]`` (a view when already channel-major, else one copy)."""
    a = np.asarray(codes)
    if axis is None or a.ndim == 0:
        return a.reshape(1, -1)
    ax = axis % a.ndim
    if ax == 0:
        return np.ascontiguousarray(a).reshape(a.shape[0], -1)
    return np.ascontiguousarray(np.moveaxis(a, ax, 0)).reshape(a.shape[ax], -1)


@numba.njit(cache=True, nogil=True)
def _count_rows(x3, vmin, R, want_pairs, want_odd, P):  # pragma: no cover - compiled
    # x3: [A, C, B]; row c is x3[0, c, :], x3[1, c, :], ... (its memory order)
    A, C, B = x3.shape
    counts = np.zeros((C, R), np.int64)
    rmin = np.zeros(C, np.int64)
    rmax = np.zeros(C, np.int64)
    for c in range(C):
        lo = np.int64(1) << 62
        hi = -lo
        for a in range(A):
            for b in range(B):
                v = np.int64(x3[a, c, b])
                counts[c, v - vmin] += 1
                if v < lo:
                    lo = v
                if v > hi:
                    hi = v
        rmin[c] = lo
        rmax[c] = hi
    pe = np.zeros((C if want_pairs else 1, P * P), np.int64)
    po = np.zeros((C if want_odd else 1, P * P), np.int64)
    if want_pairs:
        for c in range(C):
            if rmax[c] - rmin[c] >= P:
                continue
            lo = rmin[c]
            pos = 0
            prev = np.int64(0)
            for a in range(A):
                for b in range(B):
                    v = np.int64(x3[a, c, b]) - lo
                    if pos & 1:
                        pe[c, prev * P + v] += 1
                    elif pos > 0 and want_odd:
                        po[c, prev * P + v] += 1
                    prev = v
                    pos += 1
    return counts, rmin, rmax, pe, po


def tensor_counts(
    codes: np.ndarray,
    axis: int | None,
    *,
    pairs: bool = True,
    value_min: int | None = None,
    value_max: int | None = None,
) -> TensorCounts:
    """Count the values of integer ``codes`` per channel along ``axis`` (None: one channel).

    ``value_min``/``value_max`` fix the alphabet (default: the observed extremes). One parallel
    pass over the data, a second one for ``pairs`` (compiled, releases the GIL); no copy when ``codes`` is
    C-contiguous.
    """
    a = np.asarray(codes)
    if a.dtype.kind not in "iu":
        raise AnalysisError(f"codes must be integers, got dtype {a.dtype}")
    if a.size == 0:
        raise AnalysisError(f"cannot count an empty tensor of shape {a.shape}")
    a = np.ascontiguousarray(a)
    if axis is None or a.ndim == 0:
        x3 = a.reshape(1, 1, -1)
        ax = None
    else:
        ax = axis % a.ndim
        A = math.prod(a.shape[:ax])
        B = math.prod(a.shape[ax + 1 :])
        x3 = a.reshape(A, a.shape[ax], B)
    lo = int(a.min()) if value_min is None else int(value_min)
    hi = int(a.max()) if value_max is None else int(value_max)
    if value_min is not None or value_max is not None:
        if int(a.min()) < lo or int(a.max()) > hi:
            raise AnalysisError(f"values span [{int(a.min())}, {int(a.max())}], outside the alphabet [{lo}, {hi}]")
    R = hi - lo + 1
    if R > (1 << 16):
        raise AnalysisError(f"alphabet of {R} values exceeds 65536; codes must span at most 16 bits")
    M = int(x3.shape[0] * x3.shape[2])
    want_odd = bool(pairs and M % 2 == 1)
    counts, rmin, rmax, pe, po = _count_rows(x3, np.int64(lo), R, bool(pairs), want_odd, PAIR_RANGE)
    return TensorCounts(
        counts=counts,
        value_min=lo,
        row_length=M,
        row_min=rmin,
        row_max=rmax,
        first=x3[0, :, 0].astype(np.int64),
        last=x3[-1, :, -1].astype(np.int64),
        pair_ok=(rmax - rmin < PAIR_RANGE) if pairs else np.zeros(counts.shape[0], dtype=bool),
        pair_even=pe if pairs else None,
        pair_odd=po if want_odd else None,
        shape=tuple(int(d) for d in a.shape),
        axis=ax,
        dtype=a.dtype.name,
    )


def pooled_entropy(tc: TensorCounts) -> float:
    """Shannon entropy of the values pooled over all channels (bits per value), as the paper's code."""
    return shannon_entropy(tc.pooled())


def channel_entropies(tc: TensorCounts) -> np.ndarray:
    """Shannon entropy of each channel's values (bits per value), float64 [C] (computed once per counts)."""
    cached = tc._cache.get("channel_entropies")
    if cached is None:
        cached = np.array([shannon_entropy(row) for row in tc.counts], dtype=np.float64)
        cached.setflags(write=False)
        tc._cache["channel_entropies"] = cached
    return cached


def channel_entropy(tc: TensorCounts) -> float:
    """Conditional entropy H(value | channel) in bits per value: the bound for channel-aware codes."""
    return float(np.dot(channel_entropies(tc), tc.counts.sum(axis=1)) / max(tc.n_values, 1))


# --------------------------------------------------------------------------- file-layout costs


def _index_bytes(n_values: int, group: int, chunk_size: int, max_code_length: int) -> int:
    """Bytes of the codec's chunk index for a segment of ``n_values`` values (one entry per chunk)."""
    from entropy.codec import CodecParams

    params = CodecParams(group=group, max_code_length=max_code_length, chunk_size=chunk_size, value_min=0,
                         value_range=1)
    return -(-n_values // chunk_size) * params.index_entry_bytes


@lru_cache(maxsize=None)
def _record_fixed_bytes() -> int:
    """Bytes of a tensor-table record of a 1-D tensor with a 0-byte name and no metadata arrays.

    Measured once by writing a tiny file, so it follows :mod:`entropy.container`'s layout exactly.
    """
    import os
    import tempfile

    from entropy.container import save

    with tempfile.TemporaryDirectory() as d:
        info = save(os.path.join(d, "probe.hqt"), {"x": np.zeros(1, dtype=np.uint8)}, metadata={"tool": "probe"})
    return int(info.tensors[0].entry_bytes) - 1


def _aligned(n: int) -> int:
    return -(-n // 8) * 8


def segment_name(layer: str, choice: str, i: int, n_segments: int) -> str:
    """Name of segment ``i`` of a layer's entry in the file (the layer name when unsplit)."""
    return layer if n_segments == 1 else f"{layer}#{choice}.{i}"


# --------------------------------------------------------------------------- choices


@dataclass(frozen=True)
class Segment:
    """One coded segment: the rows ``channels`` concatenated, one code. Sizes in bits."""

    channels: np.ndarray  # int64 channel indices, increasing
    group: int  # 1 = single values, 2 = pairs
    value_min: int
    value_range: int
    n_values: int
    codebook: Codebook
    payload_bits: int
    index_bits: int

    @property
    def codebook_bits(self) -> int:
        return self.codebook.serialized_bits


@dataclass(frozen=True)
class CodingChoice:
    """A way to code one tensor, with its exact size in bits (see the module docstring)."""

    name: str
    segments: tuple[Segment, ...]
    n_values: int
    payload_bits: int
    codebook_bits: int  # distinct codebooks, each counted once
    index_bits: int
    record_bits: int  # tensor-table records, codebook record headers, alignment padding
    map_bits: int  # which channel is in which segment, where not implied
    extra: dict = field(default_factory=dict)

    @property
    def side_bits(self) -> int:
        """Everything but the payload, in bits."""
        return self.codebook_bits + self.index_bits + self.record_bits + self.map_bits

    @property
    def total_bits(self) -> int:
        return self.payload_bits + self.side_bits

    @property
    def avg_code_length(self) -> float:
        """Payload bits per value (the Huffman average code length, side information excluded)."""
        return self.payload_bits / self.n_values if self.n_values else 0.0

    @property
    def bits_per_value(self) -> float:
        """Total bits per value, side information included."""
        return self.total_bits / self.n_values if self.n_values else 0.0

    def as_row(self) -> dict:
        return {
            "choice": self.name,
            "segments": len(self.segments),
            "payload_bits": self.payload_bits,
            "codebook_bits": self.codebook_bits,
            "index_bits": self.index_bits,
            "record_bits": self.record_bits,
            "map_bits": self.map_bits,
            "total_bits": self.total_bits,
            "avg_code_length": self.avg_code_length,
            "bits_per_value": self.bits_per_value,
        }


def _trim(counts: np.ndarray) -> tuple[int, int]:
    nz = np.flatnonzero(counts)
    if nz.size == 0:
        return 0, 1
    return int(nz[0]), int(nz[-1] - nz[0] + 1)


def _segment_pair_counts(tc: TensorCounts, rows: np.ndarray, lo_abs: int, R: int) -> np.ndarray | None:
    """Exact counts of the pair symbols the codec forms on the concatenated rows, or None."""
    if not tc.has_pairs or R > PAIR_RANGE or not bool(np.all(tc.pair_ok[rows])):
        return None
    P = PAIR_RANGE
    M = tc.row_length
    k = rows.size
    out = np.zeros((R, R), dtype=np.int64)
    if M % 2 == 0:
        phase_rows = [(rows, tc.pair_even)]
    else:
        phase_rows = [(rows[0::2], tc.pair_even), (rows[1::2], tc.pair_odd)]
    for rr, table in phase_rows:
        if rr.size == 0:
            continue
        offs = tc.row_min[rr] - lo_abs
        for o in np.unique(offs):
            s = table[rr[offs == o]].sum(axis=0).reshape(P, P)
            w = R - int(o)
            out[o:, o:] += s[:w, :w]
    if M % 2 == 1:
        # row j at an even position leaves its last value to pair with row j+1's first value
        a = tc.last[rows[0:-1:2]] - lo_abs
        b = tc.first[rows[1::2]] - lo_abs
        np.add.at(out, (a, b), 1)
        if k % 2 == 1:  # odd total: the codec pads the last value with base symbol 0
            out[tc.last[rows[-1]] - lo_abs, 0] += 1
    return out.ravel()


def _make_segment(
    tc: TensorCounts, rows: np.ndarray, group: int, *, max_code_length: int, chunk_size: int
) -> Segment | None:
    single = tc.counts[rows].sum(axis=0)
    first, R = _trim(single)
    lo_abs = tc.value_min + first
    n = int(rows.size * tc.row_length)
    if group == 1:
        sym = single[first : first + R]
    else:
        sym = _segment_pair_counts(tc, rows, lo_abs, R)
        if sym is None:
            return None
    cb = Codebook.from_counts(sym, max_code_length)
    payload = int(np.dot(sym, cb.lengths.astype(np.int64)))
    index = 8 * _index_bytes(n, group, chunk_size, max_code_length)
    return Segment(
        channels=np.asarray(rows, dtype=np.int64), group=group, value_min=lo_abs, value_range=R,
        n_values=n, codebook=cb, payload_bits=payload, index_bits=index,
    )


def _map_bytes(n_channels: int) -> int:
    """Bytes of a segment's ``channels`` metadata array (uint16 channel indices) in its record."""
    return 2 + len("channels") + 2 + 8 + 2 * n_channels


def _assemble(
    name: str, segs: list[Segment | None], tc: TensorCounts, *, layer: str, with_map: bool
) -> CodingChoice | None:
    if not segs or any(s is None for s in segs):
        return None
    fixed = _record_fixed_bytes()
    seen: set[bytes] = set()
    cb_bits = 0
    record_bits = 0
    map_bits = 0
    for i, s in enumerate(segs):
        assert s is not None
        cbb = s.codebook.to_bytes()
        if cbb not in seen:  # the file stores identical codebooks once
            seen.add(cbb)
            cb_bits += 8 * len(cbb)
            record_bits += 8 * 4  # the codebook record's length field
        ndim = 2 if len(segs) == 1 else 1
        rec = fixed + len(segment_name(layer, name, i, len(segs)).encode()) + 8 * (ndim - 1)
        idx_b = s.index_bits // 8
        pay_b = -(-s.payload_bits // 8)
        pad = (_aligned(idx_b) - idx_b) + (_aligned(pay_b) - pay_b)
        record_bits += 8 * (rec + pad) + (8 * pay_b - s.payload_bits)
        if with_map:
            map_bits += 8 * _map_bytes(s.channels.size)
    return CodingChoice(
        name=name,
        segments=tuple(segs),  # type: ignore[arg-type]
        n_values=tc.n_values,
        payload_bits=sum(s.payload_bits for s in segs),  # type: ignore[union-attr]
        codebook_bits=cb_bits,
        index_bits=sum(s.index_bits for s in segs),  # type: ignore[union-attr]
        record_bits=record_bits,
        map_bits=map_bits,
    )


def _cluster_labels(tc: TensorCounts, k: int, max_code_length: int, ent: np.ndarray) -> np.ndarray:
    """Assign channels to ``k`` shared codes (Lloyd iterations on the exact payload bits).

    Start from ``k`` equal slices of the channels sorted by entropy and mean; then alternately
    build each cluster's Huffman code and move every channel to the code that costs it the fewest
    payload bits (a symbol absent from a code is charged ``max_code_length + 4`` bits).
    """
    C, R = tc.counts.shape
    counts = tc.counts
    # integer matrix products: exact, and numpy runs them without BLAS threads (which spin on busy CPUs)
    tot = np.maximum(counts.sum(axis=1), 1)
    mean = (counts @ np.arange(R, dtype=np.int64)) / tot
    order = np.lexsort((mean, ent))
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
    # relabel in order of first appearance, dropping empty clusters
    _, first_idx = np.unique(labels, return_index=True)
    remap = {int(labels[i]): r for r, i in enumerate(sorted(first_idx))}
    return np.array([remap[int(x)] for x in labels], dtype=np.int64)


def coding_choices(
    tc: TensorCounts,
    *,
    layer: str = "tensor",
    channel_bits: np.ndarray | None = None,
    max_code_length: int = 12,
    chunk_size: int = 4096,
    clusters: tuple[int, ...] = CLUSTER_COUNTS,
    pairs: bool = True,
    prune_channel: bool = True,
) -> dict[str, CodingChoice]:
    """Exact sizes of every coding choice of one tensor, by name (see the module docstring).

    ``layer`` names the tensor's entries in the file (record sizes depend on the name).
    ``channel_bits`` (per channel, bits; may be fractional) enables the ``bitwidth`` choices.
    Choices that cannot be formed (pairs of wide channels, one channel only...) are left out, and so is
    ``channel`` when ``prune_channel`` and a lower bound shows it cannot be the smallest
    (:func:`channel_payload_bits` still gives its payload).
    """
    C = tc.n_channels
    kw = dict(max_code_length=max_code_length, chunk_size=chunk_size)
    allrows = np.arange(C)
    out: dict[str, CodingChoice | None] = {}
    groups = (1, 2) if pairs and tc.has_pairs else (1,)

    def suffix(g: int) -> str:
        return "" if g == 1 else "-pairs"

    for g in groups:
        out["layer" + suffix(g)] = _assemble(
            "layer" + suffix(g), [_make_segment(tc, allrows, g, **kw)], tc, layer=layer, with_map=False
        )
    if C > 1 and 2 in groups and tc.row_length >= _MIN_ROW_FOR_CHANNEL_PAIRS:
        out["channel-pairs"] = _assemble(
            "channel-pairs", [_make_segment(tc, np.array([c]), 2, **kw) for c in range(C)], tc,
            layer=layer, with_map=False,
        )
    if channel_bits is not None and C > 1:
        cb = np.asarray(channel_bits, dtype=np.float64).reshape(-1)
        if cb.size != C:
            raise AnalysisError(f"{layer}: {cb.size} channel bit widths for {C} channels")
        widths = np.unique(cb)
        if widths.size > 1:
            for g in groups:
                segs = [_make_segment(tc, np.flatnonzero(cb == w), g, **kw) for w in widths]
                out["bitwidth" + suffix(g)] = _assemble("bitwidth" + suffix(g), segs, tc, layer=layer, with_map=False)
    ent = channel_entropies(tc) if any(k < C for k in clusters) else None
    for k in clusters:
        if k >= C:
            continue
        labels = _cluster_labels(tc, k, max_code_length, ent)
        kk = int(labels.max()) + 1
        if kk < 2:
            continue
        for g in groups:
            name = f"cluster{k}" + suffix(g)
            segs = [_make_segment(tc, np.flatnonzero(labels == j), g, **kw) for j in range(kk)]
            out[name] = _assemble(name, segs, tc, layer=layer, with_map=True)
    if C > 1:
        # one code per channel costs a table and a tensor record per channel; build it only when a lower
        # bound (exact payload + the smallest possible table and record per channel) can beat the rest
        done = [v for v in out.values() if v is not None]
        pay = int(channel_payload_bits(tc, max_code_length).sum())
        lower = pay + 8 * C * (_record_fixed_bytes() + len(layer.encode()) + 1 + 4)
        if prune_channel and done and lower >= min(v.total_bits for v in done):
            log.debug("%s: one code per channel cannot win (>= %d bits); not built", layer, lower)
        else:
            out["channel"] = _assemble(
                "channel", [_make_segment(tc, np.array([c]), 1, **kw) for c in range(C)], tc, layer=layer,
                with_map=False,
            )
    return {k: v for k, v in out.items() if v is not None}


def channel_payload_bits(tc: TensorCounts, max_code_length: int = 12) -> np.ndarray:
    """Payload bits of each channel coded with its own Huffman code (int64 [C]); no table, no record."""
    key = ("channel_payload_bits", max_code_length)
    out = tc._cache.get(key)
    if out is None:
        lens = code_lengths_rows(tc.counts, max_code_length)
        out = np.einsum("ij,ij->i", tc.counts.astype(np.int64), lens.astype(np.int64))
        out.setflags(write=False)
        tc._cache[key] = out
    return out


def best_choice(choices: dict[str, CodingChoice]) -> CodingChoice:
    """The choice with the fewest total bits (ties: the simpler one, in insertion order)."""
    if not choices:
        raise AnalysisError("no coding choice to pick from")
    return min(choices.values(), key=lambda c: c.total_bits)


def encode_choice(rows: np.ndarray, choice: CodingChoice, *, max_code_length: int = 12, chunk_size: int = 4096) -> list:
    """Encode the segments of ``choice`` from channel ``rows`` ``[C, M]``; one EncodedTensor each.

    The unsplit layout keeps the 2-D shape ``[C, M]``; segments are 1-D. Raises AnalysisError if the
    codec's payload bits differ from the closed-form count (they never should).
    """
    from entropy.codec import encode

    out = []
    single = len(choice.segments) == 1
    for s in choice.segments:
        vals = rows if single else rows[s.channels].reshape(-1)
        enc = encode(
            vals, max_code_length=max_code_length, chunk_size=chunk_size, group=s.group, codebook=s.codebook,
            value_min=s.value_min, value_range=s.value_range,
        )
        if enc.accounting.payload_bits != s.payload_bits or 8 * len(enc.index_bytes()) != s.index_bits:
            raise AnalysisError(
                f"{choice.name}: codec gave {enc.accounting.payload_bits} payload + {8 * len(enc.index_bytes())} "
                f"index bits, closed form {s.payload_bits} + {s.index_bits}"
            )
        out.append(enc)
    return out


def reassemble(parts: list[np.ndarray], choice: CodingChoice, n_channels: int, row_length: int, dtype) -> np.ndarray:
    """Channel rows ``[C, M]`` rebuilt from the decoded segments of ``choice``."""
    if len(choice.segments) == 1:
        return np.asarray(parts[0]).reshape(n_channels, row_length)
    rows = np.empty((n_channels, row_length), dtype=dtype)
    for s, p in zip(choice.segments, parts):
        rows[s.channels] = np.asarray(p).reshape(s.channels.size, row_length)
    return rows


def from_rows(rows: np.ndarray, shape: tuple[int, ...], axis: int | None) -> np.ndarray:
    """Inverse of :func:`channel_rows`: the tensor of ``shape`` with channels along ``axis``."""
    if axis is None or len(shape) == 0:
        return rows.reshape(shape)
    ax = axis % len(shape)
    moved = rows.reshape((shape[ax],) + tuple(d for i, d in enumerate(shape) if i != ax))
    return np.moveaxis(moved, 0, ax) if ax else moved


@dataclass(frozen=True)
class LayerCoding:
    """What :func:`save_choices` writes for one tensor: its channel rows, chosen layout and quant metadata."""

    name: str
    rows: np.ndarray  # [C, M] integer codes
    choice: CodingChoice
    quant: dict | None = None  # scale, zero_point, bits... stored with the first segment


def file_entries(layers: list[LayerCoding], encoded: list[list] | None = None,
                 *, max_code_length: int = 12, chunk_size: int = 4096) -> tuple[dict, dict]:
    """The ``tensors`` and ``quant`` mappings :func:`entropy.container.save` takes for these layers.

    ``encoded``: per layer its segments' EncodedTensors (default: encoded here with :func:`encode_choice`).
    Segment entries are named by :func:`segment_name`; the layer's quantization metadata goes with its first
    segment, and cluster segments carry their ``channels`` (uint16) so the file alone says where rows go.
    """
    tensors: dict = {}
    quant: dict = {}
    for k, lc in enumerate(layers):
        encs = encoded[k] if encoded is not None else encode_choice(
            lc.rows, lc.choice, max_code_length=max_code_length, chunk_size=chunk_size)
        n = len(encs)
        for i, (s, enc) in enumerate(zip(lc.choice.segments, encs)):
            name = segment_name(lc.name, lc.choice.name, i, n)
            if name in tensors:
                raise AnalysisError(f"two tensors named {name!r}")
            tensors[name] = enc
            meta: dict = {}
            if i == 0 and lc.quant:
                meta.update(lc.quant)
            if lc.choice.map_bits:
                meta["channels"] = s.channels.astype(np.uint16)
            if meta:
                quant[name] = meta
    return tensors, quant


def save_choices(path, layers: list[LayerCoding], metadata: dict[str, str] | None = None, *,
                 max_code_length: int = 12, chunk_size: int = 4096):
    """Write every layer's chosen segments into one ``.hqt`` file; returns the container's FileInfo."""
    from entropy.container import save

    tensors, quant = file_entries(layers, max_code_length=max_code_length, chunk_size=chunk_size)
    return save(path, tensors, metadata=metadata, quant=quant, max_code_length=max_code_length,
                chunk_size=chunk_size)


def load_choice(hqt, lc_name: str, choice: CodingChoice, n_channels: int, row_length: int, dtype) -> np.ndarray:
    """Decode one layer's segments from an open :class:`entropy.container.HQTFile`; rows ``[C, M]``."""
    n = len(choice.segments)
    parts = [hqt.read(segment_name(lc_name, choice.name, i, n)) for i in range(n)]
    return reassemble(parts, choice, n_channels, row_length, dtype)
