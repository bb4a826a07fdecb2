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
data, :func:`tensor_counts`, which with the histograms of segments and the cluster assignment comes from
:mod:`entropy`), never from a trial encode:

* payload bits = sum over symbols of count * code length;
* codebook bits = 8 * len(Codebook.to_bytes()) (identical codebooks are stored once);
* index bits = the codec's chunk index for the segment's length;
* record bits = the segment's entry in the file's tensor table plus alignment padding and the
  4-byte codebook record header (the format's own size arithmetic, :mod:`entropy.fileformat`);
* map bits = the channel list of each cluster (only for ``clusterK``; the other layouts follow
  from the channel count or from the per-channel bit widths, which are stored anyway).

:func:`encode_choice` then codes the chosen segments for real, and checks that the codec's
payload bits equal the closed form.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from analysis.errors import AnalysisError
from entropy.channel_counts import TensorCounts, channel_entropies, channel_payload_bits
from entropy.channel_counts import tensor_counts as _tensor_counts
from entropy.channels import channel_rows, from_rows
from entropy.codebook import Codebook
from entropy.codec import CodecParams
from entropy.errors import EntropyError
from entropy.fileformat import align, array_record_bytes, codebook_record_bytes, index_bytes, tensor_record_bytes
from entropy.row_sets import cluster_labels, set_stream
from entropy.measures import shannon_entropy

__all__ = [
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

#: Cluster counts tried for the shared-code layouts.
CLUSTER_COUNTS = (16,)
#: Rows shorter than this never get their own pair code in the ``channel-pairs`` choice (the table would dominate).
MIN_ROW_FOR_CHANNEL_PAIRS = 16384


# --------------------------------------------------------------------------- counts (entropy's)


def tensor_counts(
    codes: np.ndarray,
    axis: int | None,
    *,
    value_min: int | None = None,
    value_max: int | None = None,
) -> TensorCounts:
    """Per-channel counts of integer ``codes`` along ``axis`` (:func:`entropy.channel_counts.tensor_counts`);
    raises AnalysisError for input it cannot count."""
    try:
        return _tensor_counts(codes, axis, value_min=value_min, value_max=value_max)
    except EntropyError as exc:
        raise AnalysisError(str(exc)) from exc


def pooled_entropy(tc: TensorCounts) -> float:
    """Shannon entropy of the values pooled over all channels (bits per value), as the paper's code."""
    return shannon_entropy(tc.pooled())


def channel_entropy(tc: TensorCounts) -> float:
    """Conditional entropy H(value | channel) in bits per value: the bound for channel-aware codes."""
    return float(np.dot(channel_entropies(tc), tc.counts.sum(axis=1)) / max(tc.n_values, 1))


# --------------------------------------------------------------------------- file-layout costs (entropy's)


def _params(group: int, max_code_length: int, chunk_size: int, value_min: int = 0, value_range: int = 1) -> CodecParams:
    return CodecParams(group=group, max_code_length=max_code_length, chunk_size=chunk_size, value_min=value_min,
                       value_range=value_range)


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
    params: CodecParams | None = None  # the stream parameters the codec stores for this segment

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


def _make_segment(
    tc: TensorCounts, rows: np.ndarray, group: int, *, max_code_length: int, chunk_size: int
) -> Segment | None:
    n = int(rows.size * tc.row_length)
    plan = set_stream(tc, np.asarray(rows, dtype=np.int64), modes=("plain",) if group == 1 else ("pairs",),
                      max_code_length=max_code_length, chunk_size=chunk_size, run_value=None)
    if plan is None:
        return None
    p = plan.params
    return Segment(
        channels=np.asarray(rows, dtype=np.int64), group=group, value_min=p.value_min, value_range=p.value_range,
        n_values=n, codebook=plan.codebook, payload_bits=plan.payload_bits, index_bits=8 * index_bytes(p, n), params=p,
    )


def _map_bytes(n_channels: int) -> int:
    """Bytes of a segment's ``channels`` metadata array (uint16 channel indices) in its record."""
    return array_record_bytes("channels", np.zeros(n_channels, np.uint16))


def _assemble(
    name: str, segs: list[Segment | None], tc: TensorCounts, *, layer: str, with_map: bool
) -> CodingChoice | None:
    if not segs or any(s is None for s in segs):
        return None
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
            record_bits += 8 * (codebook_record_bytes(cbb) - len(cbb))  # the codebook record's length field
        ndim = 2 if len(segs) == 1 else 1
        rec = tensor_record_bytes(segment_name(layer, name, i, len(segs)), ndim, [s.params])
        idx_b = s.index_bits // 8
        pay_b = -(-s.payload_bits // 8)
        pad = (align(idx_b) - idx_b) + (align(pay_b) - pay_b)
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
    groups = (1, 2) if pairs else (1,)

    def suffix(g: int) -> str:
        return "" if g == 1 else "-pairs"

    for g in groups:
        out["layer" + suffix(g)] = _assemble(
            "layer" + suffix(g), [_make_segment(tc, allrows, g, **kw)], tc, layer=layer, with_map=False
        )
    if C > 1 and 2 in groups and tc.row_length >= MIN_ROW_FOR_CHANNEL_PAIRS:
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
    for k in clusters:
        if k >= C:
            continue
        labels = cluster_labels(tc, k, max_code_length)
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
        smallest = tensor_record_bytes(layer, 1, [_params(1, max_code_length, chunk_size)])
        lower = pay + 8 * C * (smallest + 1 + 4)
        if prune_channel and done and lower >= min(v.total_bits for v in done):
            log.debug("%s: one code per channel cannot win (>= %d bits); not built", layer, lower)
        else:
            out["channel"] = _assemble(
                "channel", [_make_segment(tc, np.array([c]), 1, **kw) for c in range(C)], tc, layer=layer,
                with_map=False,
            )
    return {k: v for k, v in out.items() if v is not None}


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
        enc = encode(vals, max_code_length=s.params.max_code_length, chunk_size=s.params.chunk_size, params=s.params,
                     codebook=s.codebook)
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
