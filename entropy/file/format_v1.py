"""Reading the tensor records of format version 1 (FORMAT.md, appendix A) into the common record model.

A version-1 tensor is one stream without a channel axis; its record stores the stream parameters inline and the
index and payload offsets and lengths explicitly (checked against the canonical layout). Version 1 is read,
never written.
"""

from __future__ import annotations

import struct

from entropy.codec.params import CodecParams
from entropy.errors import EntropyError, FormatError
from entropy.format import (
    SINGLE, Cursor, StreamRecord, TensorRecord, _U16, check_informational, check_stream, check_tensor_dtype,
    parse_arrays, parse_dims, payload_bytes,
)

__all__ = ["parse_record_v1", "MIN_RECORD_BYTES"]

# dtype code, ndim, group, max_code_length, chunk_size
_ENTRY_A = struct.Struct("<BBBBI")
# value_min, value_range, payload_bits, index_offset, index_length, payload_offset,
# payload_length, codebook_id, index_crc32, payload_crc32, n_arrays, entropy, avg length
_ENTRY_B = struct.Struct("<qQQQQQQIIIIdd")
MIN_RECORD_BYTES = _U16.size + _ENTRY_A.size + _ENTRY_B.size  # 98


def parse_record_v1(cur: Cursor, n_codebooks: int) -> TensorRecord:
    """One version-1 tensor record (FORMAT.md A.4.1) as a single-stream :class:`TensorRecord`."""
    start = cur.pos
    name = cur.str_(_U16, "tensor name")
    what = f"tensor {name!r}"
    code, ndim, group, max_len, chunk_size = cur.unpack(_ENTRY_A, f"{what} record")
    check_tensor_dtype(code, what)
    shape = parse_dims(cur, ndim, what)
    (vmin, vrange, bits, ioff, ilen, poff, plen, cb_id, icrc, pcrc, n_arrays, ent, avg) = cur.unpack(
        _ENTRY_B, f"{what} record"
    )
    params = CodecParams(group=group, max_code_length=max_len, chunk_size=chunk_size, value_min=vmin,
                         value_range=vrange)
    try:
        params.validate()
    except EntropyError as exc:
        raise FormatError(f"{what}: {exc}") from exc
    stream = StreamRecord(params, cb_id, bits)
    t = TensorRecord(name, code, shape, SINGLE, None, [stream], {}, ent, avg, index_crc32=icrc, payload_crc32=pcrc,
                     stored_offsets=(ioff, ilen, poff, plen))
    stream.n_values = t.n_values
    check_stream(t, 0, stream, n_codebooks)
    if plen != payload_bytes(bits):
        raise FormatError(f"{what}: payload length {plen} bytes != ceil({bits} bits / 8)")
    arrays_start = cur.pos
    t.arrays = parse_arrays(cur, n_arrays, what)
    t.arrays_bytes = cur.pos - arrays_start
    t.record_bytes = cur.pos - start
    check_informational(t)
    return t
