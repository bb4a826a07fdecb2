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
(:mod:`entropy.format`). The writer encodes the chosen streams and checks that the codec's sizes equal these
(:func:`prepare_streams`).
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
from entropy.codec.streams import EncodedTensor, PreparedEncode, prepare_encode
from entropy.errors import EntropyError, FormatError
from entropy.layout.channel_counts import MAX_COUNT_CELLS, tensor_counts
from entropy.format import (
    LAYOUTS, align, codebook_record_bytes, index_bytes, map_bytes, payload_bytes, stream_record_bytes,
    tensor_record_bytes,
)
from entropy.codec.lengths import MAX_ALPHABET
from entropy.codec.measures import shannon_entropy
from entropy.codec.params import MODES
from entropy.layout.row_sets import channel_layout_lower_bound, cluster_labels, group_modes, mode_histograms, set_stream

__all__ = [
    "CLUSTER_COUNTS",
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
    **option_fields: object,
) -> dict[str, LayoutChoice]:
    """Every layout of ``values`` the search considers, by name, with exact sizes (see the module docstring).

    ``options``: how every stream is coded (:class:`~entropy.CodecOptions`, or its fields as keyword arguments).
    ``name`` and ``arrays`` (the tensor's metadata arrays, as stored) enter the record size; a ``bits`` array of
    one entry per channel enables ``bitwidth``. ``layout`` restricts the search to one layout (``"clusterK"``:
    K clusters); ``clusters`` are the cluster counts tried. ``prune`` skips ``channel`` when a lower bound shows
    it cannot be the smallest. Without an axis (or for an empty tensor) only ``single`` exists.
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
    C, M = tc.n_channels, tc.row_length
    pooled = tc.pooled()
    entropy = shannon_entropy(pooled)
    run_value = tc.value_min + int(np.argmax(pooled))  # one run value for every set: its runs counted once per row
    mode_lists = group_modes(opts)

    def streams_of(groups: list[np.ndarray], limit: float = float("inf"), floors: np.ndarray | None = None,
                   fixed: int = 0) -> list[LayoutStream] | None:
        """The streams of ``groups``; None when a group has no mode, or (branch and bound) as soon as the exact
        bytes of the streams made so far (without their codebooks, which may be shared) plus ``floors`` (the
        fewest bytes of each group) of the rest and ``fixed`` reach ``limit``."""
        got = []
        rest = float(floors.sum()) if floors is not None else 0.0
        made = 0
        for j, ch in enumerate(groups):
            plan = None
            for modes in mode_lists:
                plan = set_stream(tc, ch, modes=modes, run_value=run_value, escapes=opts.escape, **kw)
                if plan is not None:
                    break
            if plan is None:
                return None
            s = LayoutStream(plan.params, plan.codebook, plan.payload_bits, int(ch.size) * M, channels=ch)
            got.append(s)
            if floors is not None:
                made += s.payload_bytes + s.index_bytes + stream_record_bytes(s.params)
                rest -= floors[j]
                if made + rest + fixed >= limit:
                    return None
        return got

    def add(label: str, lay: str, groups: list[np.ndarray], channel_map: np.ndarray, **bound) -> None:
        st = streams_of(groups, **bound)
        if st is not None:
            c = _assemble(label, lay, name, a.shape, ax, st, channel_map, arrays, entropy)
            if label not in out or c.total_bytes < out[label].total_bytes:
                out[label] = c

    if kind == "bitwidth" or kind == "auto":
        bits = (arrays or {}).get("bits")
        ok = bits is not None and np.ndim(bits) == 1 and np.size(bits) == C and np.asarray(bits).dtype.kind in "iuf"
        b = np.asarray(bits, dtype=np.float64) if ok else None
        if ok and np.isfinite(b).all():
            widths, inverse = np.unique(b, return_inverse=True)
            if widths.size > 1 or kind == "bitwidth":
                add("bitwidth", "bitwidth", [np.flatnonzero(inverse == r) for r in range(widths.size)],
                    inverse.astype(np.int64))
        elif kind == "bitwidth":
            raise FormatError(f"tensor {name!r}: layout bitwidth needs a 'bits' array with one finite entry per "
                              f"channel ({C})")
    if kind == "cluster" or kind == "auto":
        ks = [k_req] if k_req is not None else [k for k in clusters if k < C]
        # cluster on the value histograms, and on the symbols of the mode that one stream of all the rows would
        # use (pairs or run symbols, when counted per row): the smaller result is kept
        sources = [None]
        whole = streams_of([np.arange(C)])
        h = mode_histograms(tc, whole[0].params) if whole else None
        if h is not None:
            sources.append(h)
        for k in ks:
            if k < 1:
                raise FormatError(f"tensor {name!r}: cluster count must be at least 1, got {k}")
            seen: list[np.ndarray] = []
            for h in sources:
                labels = cluster_labels(tc, min(k, C), opts.max_code_length, counts=h)
                kk = int(labels.max()) + 1
                if (kk < 2 and kind == "auto") or any(np.array_equal(labels, x) for x in seen):
                    continue
                seen.append(labels)
                add(f"cluster{k}", "cluster", [np.flatnonzero(labels == j) for j in range(kk)], labels)
    if kind == "channel" or (kind == "auto" and C > 1):
        bound = {}
        if kind == "auto" and prune and out:
            # one code per channel costs a stream record, an index and a codebook per channel: built only while a
            # lower bound (the exact bytes of the channels coded so far + the entropy of every other channel in
            # its best mode and the smallest side information) stays below the best so far
            any_mode = tuple(m for m in MODES if any(m in ml for ml in mode_lists))
            floors, fixed = channel_layout_lower_bound(tc, modes=any_mode, run_value=run_value, **kw)
            bound = dict(limit=min(c.total_bytes for c in out.values()), floors=floors,
                         fixed=fixed + tensor_record_bytes(name, a.ndim, [], arrays=arrays))
        add("channel", "channel", [np.array([c]) for c in range(C)], np.arange(C, dtype=np.int64), **bound)
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
    """The smallest layout of ``values`` (:func:`layout_choices` arguments).

    >>> import numpy as np, entropy
    >>> w = (np.arange(1024) % 16 + 16 * (np.arange(1024) // 256)).astype(np.uint8).reshape(4, 256)
    >>> entropy.choose_layout(w, axis=0).layout  # channel c holds the values 16c .. 16c + 15: a code each
    'channel'
    """
    return best_layout(layout_choices(values, **kwargs))


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
        p = s.params
        enc = prepare_encode(rows[s.channels].reshape(-1), params=p, codebook=s.codebook)  # (p fixes the coding)
        if enc.accounting.payload_bits != s.payload_bits or enc.index_length != s.index_bytes:
            raise FormatError(
                f"{choice.name} stream {j}: the codec gives {enc.accounting.payload_bits} payload bits and "
                f"{enc.index_length} index bytes, the closed form {s.payload_bits} and {s.index_bytes}"
            )
        out.append(enc)
    return out
