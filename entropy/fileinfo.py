"""What an ``.hqt`` file's header says about its tensors, with every byte attributed (FORMAT.md §11)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from entropy.errors import MissingTensorError
from entropy.fileformat import PREAMBLE_SIZE, _U32, _Entry, _Header, align

__all__ = ["TensorInfo", "FileInfo", "build_info"]



@dataclass(frozen=True)
class TensorInfo:
    """What the header says about one tensor (no decoding needed). Sizes in bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    n_values: int
    group: int
    max_code_length: int  # bits
    chunk_size: int  # values
    n_chunks: int
    value_min: int
    value_range: int
    codebook_id: int
    codebook_shared: bool
    nominal_bits: float  # bits per value before coding (quant `bits`, else ceil(log2(value_range)))
    entropy_bits: float  # bits per value, order-0 Shannon entropy (computed by the codec)
    avg_code_length: float  # bits per value
    payload_bits: int
    payload_bytes: int
    index_bytes: int
    codebook_bytes: float  # this tensor's share of its (maybe shared) codebook record
    entry_bytes: int  # its record in the tensor table, metadata arrays included
    metadata_bytes: int  # the metadata-array part of entry_bytes
    padding_bytes: int  # alignment padding after its index and payload
    total_bytes: float  # entry + codebook share + index + payload + padding
    coded_bits_per_value: float  # 8 * total_bytes / n_values (0.0 when empty)
    ratio_to_nominal: float | None  # coded_bits_per_value / nominal_bits
    quant_keys: tuple[str, ...]
    index_crc32: int
    payload_crc32: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["quant_keys"] = list(self.quant_keys)
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
        d = {k: v for k, v in asdict(self).items() if k != "tensors"}
        d["tensors"] = [t.to_dict() for t in self.tensors]
        return d



def _nominal_bits(e: _Entry) -> float:
    bits = e.arrays.get("bits")
    if bits is not None and bits.size:
        # element-weighted over channels: every channel of an axis has the same size
        return float(np.mean(bits.astype(np.float64)))
    levels = e.arrays.get("levels")
    if levels is not None and levels.size:
        return float(np.mean(np.log2(np.maximum(levels.astype(np.float64), 1.0))))
    return float(math.ceil(math.log2(e.value_range))) if e.value_range > 1 else 0.0


def build_info(path: str, h: _Header) -> FileInfo:
    # one pass for the users of each codebook (linear in the number of tensors)
    n_users = [0] * len(h.codebooks)
    users_values = [0] * len(h.codebooks)
    for e in h.entries:
        n_users[e.codebook_id] += 1
        users_values[e.codebook_id] += e.n_values
    cb_record = [_U32.size + len(cb) for cb in h.codebooks]
    tensors = []
    for e in h.entries:
        i = e.codebook_id
        total_n = users_values[i]
        share = cb_record[i] * (e.n_values / total_n if total_n else 1.0 / n_users[i])
        padding = (align(e.index_length) - e.index_length) + (align(e.payload_length) - e.payload_length)
        total = e.entry_bytes + share + e.index_length + e.payload_length + padding
        n = e.n_values
        bpv = 8.0 * total / n if n else 0.0
        nominal = _nominal_bits(e)
        tensors.append(
            TensorInfo(
                name=e.name, shape=e.shape, dtype=e.dtype.name, n_values=n, group=e.group,
                max_code_length=e.max_code_length, chunk_size=e.chunk_size,
                n_chunks=-(-n // e.chunk_size), value_min=e.value_min, value_range=e.value_range,
                codebook_id=e.codebook_id, codebook_shared=n_users[i] > 1, nominal_bits=nominal,
                entropy_bits=e.entropy_bits, avg_code_length=e.avg_code_length,
                payload_bits=e.payload_bits, payload_bytes=e.payload_length, index_bytes=e.index_length,
                codebook_bytes=share, entry_bytes=e.entry_bytes, metadata_bytes=e.arrays_bytes,
                padding_bytes=padding, total_bytes=total, coded_bits_per_value=bpv,
                ratio_to_nominal=(bpv / nominal if nominal and n else None),
                quant_keys=tuple(e.arrays), index_crc32=e.index_crc32, payload_crc32=e.payload_crc32,
            )
        )
    n_all = sum(t.n_values for t in tensors)
    return FileInfo(
        path=path, version=h.version, metadata=dict(h.metadata), tensors=tuple(tensors),
        file_bytes=h.file_length, header_bytes=PREAMBLE_SIZE + h.header_length,
        file_metadata_bytes=h.metadata_bytes, tensor_table_bytes=sum(e.entry_bytes for e in h.entries),
        codebook_bytes=sum(cb_record), index_bytes=sum(e.index_length for e in h.entries),
        payload_bytes=sum(e.payload_length for e in h.entries),
        padding_bytes=sum(t.padding_bytes for t in tensors), n_values=n_all,
        bits_per_value=8.0 * h.file_length / n_all if n_all else 0.0,
        entropy_bits=(sum(t.entropy_bits * t.n_values for t in tensors) / n_all if n_all else 0.0),
        header_crc32=h.header_crc32, n_codebooks=len(h.codebooks),
    )

