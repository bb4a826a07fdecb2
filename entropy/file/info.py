"""What an ``.hqt`` file's header says about its tensors, with every byte attributed (FORMAT.md §11)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from entropy.errors import MissingTensorError
from entropy.format import PREAMBLE_SIZE, Header, TensorRecord, align, codebook_record_bytes

__all__ = ["StreamInfo", "TensorInfo", "FileInfo", "build_info"]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One coded stream of a tensor (one of its codebooks). Sizes in bytes unless named in bits."""

    n_values: int
    group: int
    max_code_length: int  # bits
    chunk_size: int  # values
    n_chunks: int
    value_min: int
    value_range: int
    codebook_id: int
    n_channels: int  # channels coded with this stream (0 for a tensor without a channel axis)
    payload_bits: int
    payload_bytes: int
    index_bytes: int
    codebook_bytes: float  # this stream's share of its (maybe shared) codebook record
    mode: str = "plain"  # symbol mode: plain, pairs, runs (FORMAT.md section 7.2) or stored (7.5)
    escape_range: int = 0  # values codable raw after an escape symbol (0: no escapes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (JSON-ready: numbers and strings)."""
        return {k: getattr(self, k) for k in _STREAM_FIELDS}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """What the header says about one tensor (no decoding needed). Sizes in bytes.

    A tensor is coded as one or more streams (``streams``, one codebook each; ``layout`` says how its channels
    are split among them). The scalar code fields summarise them: ``group`` is the common group (0 when the
    streams differ), ``max_code_length`` the largest limit, ``chunk_size``/``codebook_id`` those of the first
    stream, ``value_min``/``value_range`` the span of all streams' alphabets, ``n_chunks`` and the byte counts
    the sums.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    n_values: int
    layout: str  # single, channel, bitwidth or cluster
    n_codebooks: int  # streams, one canonical codebook each (identical ones are stored once)
    channel_axis: int | None
    group: int
    max_code_length: int  # bits
    chunk_size: int  # values
    n_chunks: int
    value_min: int
    value_range: int
    codebook_id: int
    codebook_shared: bool  # a codebook of this tensor is also used by another stream or tensor
    nominal_bits: float  # bits per value before coding (quant `bits`, else ceil(log2(value_range)))
    entropy_bits: float  # bits per value, order-0 Shannon entropy (computed by the codec)
    avg_code_length: float  # bits per value
    payload_bits: int
    payload_bytes: int
    index_bytes: int
    codebook_bytes: float  # this tensor's share of its (maybe shared) codebook records
    entry_bytes: int  # its record in the tensor table: streams, channel map and metadata arrays included
    metadata_bytes: int  # the metadata-array part of entry_bytes
    map_bytes: int  # the stored channel map, part of entry_bytes (cluster layout only)
    padding_bytes: int  # alignment padding after its index and payload regions
    total_bytes: float  # entry + codebook shares + index + payload + padding
    coded_bits_per_value: float  # 8 * total_bytes / n_values (0.0 when empty)
    ratio_to_nominal: float | None  # coded_bits_per_value / nominal_bits
    quant_keys: tuple[str, ...]
    index_crc32: int
    payload_crc32: int
    streams: tuple[StreamInfo, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (JSON-ready: tuples as lists, streams as dicts). Built field by field: files of
        tens of thousands of tensors are common, and ``dataclasses.asdict`` deep-copies every value."""
        d = {k: getattr(self, k) for k in _TENSOR_FIELDS}
        d["shape"] = list(self.shape)
        d["quant_keys"] = list(self.quant_keys)
        d["streams"] = [x.to_dict() for x in self.streams]
        return d


@dataclass(frozen=True)
class FileInfo:
    """File-level summary of an .hqt file. Sizes in bytes; bits per value over all tensors."""

    path: str
    version: int
    metadata: dict[str, str]
    tensors: tuple[TensorInfo, ...]
    file_bytes: int
    header_bytes: int  # preamble + header (everything before the first index/payload)
    file_metadata_bytes: int  # the file-level string table, its 4-byte count included
    tensor_table_bytes: int  # all tensor records (with their metadata arrays)
    codebook_bytes: int  # codebook records, 4-byte length + bytes, each stored once (count not included)
    index_bytes: int
    payload_bytes: int
    padding_bytes: int  # alignment padding of indexes and payloads
    n_values: int
    bits_per_value: float  # 8 * file_bytes / n_values (0.0 when empty)
    entropy_bits: float  # value-weighted mean of the tensors' entropies
    header_crc32: int
    n_codebooks: int = 0

    def tensor(self, name: str) -> TensorInfo:
        for t in self.tensors:
            if t.name == name:
                return t
        raise MissingTensorError(f"{self.path}: no tensor named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (JSON-ready), every tensor's :meth:`TensorInfo.to_dict` under ``tensors``."""
        d = {k: getattr(self, k) for k in _FILE_FIELDS}
        d["metadata"] = dict(self.metadata)
        d["tensors"] = [t.to_dict() for t in self.tensors]
        return d


_STREAM_FIELDS = tuple(f.name for f in fields(StreamInfo))
_TENSOR_FIELDS = tuple(f.name for f in fields(TensorInfo))
_FILE_FIELDS = tuple(f.name for f in fields(FileInfo))


def _nominal_bits(t: TensorRecord, value_range: int) -> float:
    bits = t.arrays.get("bits")
    if bits is not None and bits.size and bits.dtype.kind in "iuf":
        # element-weighted over channels: every channel of an axis has the same size
        return float(np.mean(bits.astype(np.float64)))
    levels = t.arrays.get("levels")
    if levels is not None and levels.size and levels.dtype.kind in "iuf":
        return float(np.mean(np.log2(np.maximum(levels.astype(np.float64), 1.0))))
    return float(math.ceil(math.log2(value_range))) if value_range > 1 else 0.0


def build_info(path: str, h: Header) -> FileInfo:
    """Sizes and statistics of every tensor of a parsed header; linear in the number of tensors and streams."""
    n_users = [0] * len(h.codebooks)
    users_values = [0] * len(h.codebooks)
    for t in h.tensors:
        for s in t.streams:
            n_users[s.codebook_id] += 1
            users_values[s.codebook_id] += s.n_values
    cb_record = [codebook_record_bytes(cb) for cb in h.codebooks]
    tensors = []
    for t in h.tensors:
        streams = []
        for j, s in enumerate(t.streams):
            i = s.codebook_id
            if t.axis is None:
                n_channels = 0
            else:
                n_channels = t.n_channels if t.channel_map is None else int(t.stream_channels(j).size)
            total_n = users_values[i]
            # a shared record is split among its users in proportion to their values (evenly if all are empty)
            share = cb_record[i] * (s.n_values / total_n if total_n else 1.0 / n_users[i])
            p = s.params
            streams.append(StreamInfo(
                n_values=s.n_values, group=p.group, max_code_length=p.max_code_length, chunk_size=p.chunk_size,
                n_chunks=s.n_chunks, value_min=p.value_min, value_range=p.value_range, codebook_id=i,
                n_channels=n_channels,
                payload_bits=s.payload_bits, payload_bytes=s.payload_length, index_bytes=s.index_length,
                codebook_bytes=share, mode=p.mode, escape_range=p.escape_range,
            ))
        ilen, plen = t.index_length, t.payload_length
        padding = (align(ilen) - ilen) + (align(plen) - plen)
        # the streams summarised in one pass (tens of thousands of small tensors: no generator per field)
        first = streams[0]
        share, lo, hi, max_len, n_chunks, pay_bits = 0.0, first.value_min, 0, 0, 0, 0
        group, shared = first.group, False
        for x in streams:
            share += x.codebook_bytes
            lo, hi = min(lo, x.value_min), max(hi, x.value_min + x.value_range)
            max_len, n_chunks, pay_bits = max(max_len, x.max_code_length), n_chunks + x.n_chunks, pay_bits + x.payload_bits
            group = group if x.group == group else 0
            shared = shared or n_users[x.codebook_id] > 1
        span = hi - lo
        total = t.record_bytes + share + ilen + plen + padding
        n = t.n_values
        bpv = 8.0 * total / n if n else 0.0
        nominal = _nominal_bits(t, span)
        tensors.append(
            TensorInfo(
                name=t.name, shape=t.shape, dtype=t.dtype_name, n_values=n, layout=t.layout_name,
                n_codebooks=len(streams), channel_axis=t.axis, group=group, max_code_length=max_len,
                chunk_size=first.chunk_size, n_chunks=n_chunks, value_min=lo, value_range=span,
                codebook_id=first.codebook_id, codebook_shared=shared, nominal_bits=nominal,
                entropy_bits=t.entropy_bits, avg_code_length=t.avg_code_length,
                payload_bits=pay_bits, payload_bytes=plen, index_bytes=ilen,
                codebook_bytes=share, entry_bytes=t.record_bytes, metadata_bytes=t.arrays_bytes,
                map_bytes=t.map_bytes, padding_bytes=padding, total_bytes=total, coded_bits_per_value=bpv,
                ratio_to_nominal=(bpv / nominal if nominal and n else None),
                quant_keys=tuple(t.arrays), index_crc32=t.index_crc32, payload_crc32=t.payload_crc32,
                streams=tuple(streams),
            )
        )
    n_all = sum(t.n_values for t in tensors)
    return FileInfo(
        path=path, version=h.version, metadata=dict(h.metadata), tensors=tuple(tensors),
        file_bytes=h.file_length, header_bytes=PREAMBLE_SIZE + h.header_length,
        file_metadata_bytes=h.metadata_bytes, tensor_table_bytes=sum(t.record_bytes for t in h.tensors),
        codebook_bytes=sum(cb_record), index_bytes=sum(t.index_bytes for t in tensors),
        payload_bytes=sum(t.payload_bytes for t in tensors),
        padding_bytes=sum(t.padding_bytes for t in tensors), n_values=n_all,
        bits_per_value=8.0 * h.file_length / n_all if n_all else 0.0,
        entropy_bits=(sum(t.entropy_bits * t.n_values for t in tensors) / n_all if n_all else 0.0),
        header_crc32=h.header_crc32, n_codebooks=len(h.codebooks),
    )
