"""Mixed-precision channel packing: four ways to store a layer whose channels have different bit widths.

Per-channel bit allocation gives channel ``c`` ``levels[c]`` quantization levels, i.e. a width of
``w[c] = ceil(log2(levels[c]))`` bits (0 bits for a 1-level channel). For one layer of ``C``
channels with ``M`` values each, this module sizes and really builds:

(i)   ``widest``: every value stored at the layer's widest width, ``C * M * max(w)`` bits;
(ii)  ``dense``: each channel bit-packed at its own width, back to back, ``M * sum(w)`` bits;
(iii) ``huffman-layer``: one Huffman code over the whole layer's mixed channels;
(iv)  ``huffman-bitwidth``: one Huffman code per group of channels of equal width.

(i) and (ii) are MSB-first bit strings (a :class:`bitarray.bitarray` of exactly the closed-form
length) whose per-channel widths come from the quantization metadata stored anyway; (iii) and (iv)
are entropy's ``single`` and ``bitwidth`` layouts (:func:`entropy.layout_choices`; the groups are the
channels with the same ``bits``), sized exactly with all their side information (codebooks, chunk
index, tensor record) except the metadata arrays, as :mod:`analysis.coding` measures them. Values are
packed relative to each channel's smallest code ``qmin[c]``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numba
import numpy as np
from bitarray import bitarray

from analysis.coding import LayoutMeasures
from analysis.errors import AnalysisError

__all__ = [
    "PackingResult", "channel_widths", "pack_rows", "unpack_rows", "packing_sizes", "pack_layer", "check_huffman",
    "byte_pack", "zstd_bits_per_value",
]


def channel_widths(levels: np.ndarray) -> np.ndarray:
    """Bits needed per channel to store ``levels`` distinct codes: ``ceil(log2(levels))`` (int64)."""
    lv = np.asarray(levels, dtype=np.int64).reshape(-1)
    if lv.size and int(lv.min()) < 1:
        raise AnalysisError(f"a channel needs at least 1 level, got {int(lv.min())}")
    # exact integer ceil(log2): bit length of (levels - 1)
    w = np.zeros(lv.shape, dtype=np.int64)
    x = lv - 1
    while np.any(x > 0):
        w += x > 0
        x >>= 1
    return w


@numba.njit(cache=True, nogil=True)
def _pack(rows, qmin, widths, starts, out):  # pragma: no cover - compiled
    # MSB-first; a 64-bit accumulator collects whole values and flushes full bytes
    C, M = rows.shape
    for c in range(C):
        w = widths[c]
        if w == 0:
            continue
        pos = starts[c]
        byte = pos >> 3
        nacc = pos & 7  # bits pending in acc (the head of a byte shared with the previous channel)
        acc = np.uint64(out[byte] >> (8 - nacc)) if nacc else np.uint64(0)
        base = qmin[c]
        mask = (np.uint64(1) << np.uint64(w)) - np.uint64(1)
        for j in range(M):
            acc = (acc << np.uint64(w)) | (np.uint64(np.int64(rows[c, j]) - base) & mask)
            nacc += w
            while nacc >= 8:
                nacc -= 8
                out[byte] = np.uint8((acc >> np.uint64(nacc)) & np.uint64(255))
                byte += 1
        if nacc:
            out[byte] = np.uint8((acc << np.uint64(8 - nacc)) & np.uint64(255))


@numba.njit(cache=True, nogil=True)
def _unpack(buf, qmin, widths, starts, out):  # pragma: no cover - compiled
    C, M = out.shape
    nbuf = buf.size
    for c in range(C):
        w = widths[c]
        base = qmin[c]
        if w == 0:
            for j in range(M):
                out[c, j] = base
            continue
        pos = starts[c]
        byte = pos >> 3
        nacc = 8 - (pos & 7)
        acc = np.uint64(buf[byte]) & ((np.uint64(1) << np.uint64(nacc)) - np.uint64(1))
        byte += 1
        mask = (np.uint64(1) << np.uint64(w)) - np.uint64(1)
        for j in range(M):
            while nacc < w:
                nxt = np.uint64(buf[byte]) if byte < nbuf else np.uint64(0)
                acc = (acc << np.uint64(8)) | nxt
                byte += 1
                nacc += 8
            nacc -= w
            out[c, j] = np.int64((acc >> np.uint64(nacc)) & mask) + base
            acc &= (np.uint64(1) << np.uint64(nacc)) - np.uint64(1)


def _starts(widths: np.ndarray, row_length: int) -> tuple[np.ndarray, int]:
    per_row = widths.astype(np.int64) * row_length
    starts = np.concatenate(([0], np.cumsum(per_row)[:-1])).astype(np.int64)
    return starts, int(per_row.sum())


def pack_rows(rows: np.ndarray, widths: np.ndarray, qmin: np.ndarray | None = None) -> bitarray:
    """Bit-pack channel ``rows`` ``[C, M]``, row ``c`` at ``widths[c]`` bits per value, MSB first.

    Returns a bitarray of exactly ``M * sum(widths)`` bits. Raises AnalysisError if a value does not
    fit its channel's width.
    """
    r = np.ascontiguousarray(rows)
    C, M = r.shape
    w = np.asarray(widths, dtype=np.int64).reshape(-1)
    q0 = np.zeros(C, dtype=np.int64) if qmin is None else np.asarray(qmin, dtype=np.int64).reshape(-1)
    if w.size != C or q0.size != C:
        raise AnalysisError(f"{C} rows but {w.size} widths and {q0.size} offsets")
    if r.size:
        rel_lo = r.min(axis=1).astype(np.int64) - q0
        rel_hi = r.max(axis=1).astype(np.int64) - q0
        bad = np.flatnonzero((rel_lo < 0) | (rel_hi >= (np.int64(1) << w)))
        if bad.size:
            c = int(bad[0])
            raise AnalysisError(
                f"channel {c}: codes {int(rel_lo[c] + q0[c])}..{int(rel_hi[c] + q0[c])} do not fit "
                f"{int(w[c])} bits above {int(q0[c])}"
            )
    starts, total = _starts(w, M)
    buf = np.zeros(-(-total // 8), dtype=np.uint8)
    _pack(r, q0, w, starts, buf)
    out = bitarray(endian="big")
    out.frombytes(buf.tobytes())
    del out[total:]
    return out


def unpack_rows(bits: bitarray, widths: np.ndarray, row_length: int, qmin: np.ndarray | None = None,
                dtype=np.int64) -> np.ndarray:
    """Inverse of :func:`pack_rows`: rows ``[C, row_length]`` of ``dtype``."""
    w = np.asarray(widths, dtype=np.int64).reshape(-1)
    C = w.size
    q0 = np.zeros(C, dtype=np.int64) if qmin is None else np.asarray(qmin, dtype=np.int64).reshape(-1)
    starts, total = _starts(w, row_length)
    if len(bits) != total:
        raise AnalysisError(f"packed stream has {len(bits)} bits, widths need {total}")
    buf = np.frombuffer(bits.tobytes(), dtype=np.uint8)
    out = np.empty((C, row_length), dtype=dtype)
    _unpack(buf, q0, w, starts, out)
    return out


@dataclass(frozen=True)
class PackingResult:
    """Sizes (bits) of the four packings of one layer; ``*_ok`` are the lossless round-trip checks."""

    layer: str
    n_values: int
    n_channels: int
    nominal_bits: float  # element-weighted mean of log2(levels) over channels (bits per value)
    widest_width: int
    widest_bits: int  # (i)
    dense_bits: int  # (ii)
    huffman_layer_bits: int  # (iii)
    huffman_bitwidth_bits: int | None  # (iv); None when every channel has the same bit width
    widest_ok: bool | None = None
    dense_ok: bool | None = None
    huffman_ok: bool | None = None

    def as_row(self) -> dict:
        n = max(self.n_values, 1)
        iv = self.huffman_bitwidth_bits if self.huffman_bitwidth_bits is not None else self.huffman_layer_bits
        return {
            "layer": self.layer,
            "n_values": self.n_values,
            "n_channels": self.n_channels,
            "nominal_bits": self.nominal_bits,
            "widest_width": self.widest_width,
            "widest_bpv": self.widest_bits / n,
            "dense_bpv": self.dense_bits / n,
            "huffman_layer_bpv": self.huffman_layer_bits / n,
            "huffman_bitwidth_bpv": iv / n,
            "widest_bits": self.widest_bits,
            "dense_bits": self.dense_bits,
            "huffman_layer_bits": self.huffman_layer_bits,
            "huffman_bitwidth_bits": iv,
            "lossless": all(x is not False for x in (self.widest_ok, self.dense_ok, self.huffman_ok)),
        }


def packing_sizes(measures: LayoutMeasures, levels: np.ndarray, *, layer: str = "tensor") -> PackingResult:
    """Closed-form sizes of (i)-(iv) for a layer with per-channel ``levels``, from the layouts entropy sized for
    it (:func:`analysis.coding.measure_layouts`; (iv) needs its ``bitwidth`` layout, present when the stored
    ``bits`` differ between channels). No data pass."""
    lv = np.asarray(levels, dtype=np.int64).reshape(-1)
    n = measures.n_values
    if "single" not in measures.choices:
        raise AnalysisError(f"{layer}: no single-code layout was sized")
    if lv.size == 0 or n % lv.size:
        raise AnalysisError(f"{layer}: {lv.size} channel level counts for {n} values")
    w = channel_widths(lv)
    M = n // lv.size
    bw = measures.choices.get("bitwidth")
    return PackingResult(
        layer=layer,
        n_values=n,
        n_channels=int(lv.size),
        nominal_bits=float(np.mean(np.log2(lv.astype(np.float64)))),
        widest_width=int(w.max()),
        widest_bits=int(lv.size * M * int(w.max())),
        dense_bits=int(M * int(w.sum())),
        huffman_layer_bits=measures.coded_bits(measures.choices["single"]),
        huffman_bitwidth_bits=measures.coded_bits(bw) if bw is not None else None,
    )


def pack_layer(rows: np.ndarray, result: PackingResult, levels: np.ndarray, qmin: np.ndarray | None = None, *,
               widest: bool = True) -> PackingResult:
    """Really build (ii) (with ``widest`` also (i)) from channel ``rows`` ``[C, M]``, check their sizes against
    the closed form and decode them.

    Returns ``result`` with the ``*_ok`` flags set (None for a packing not built). Raises AnalysisError if a
    built size differs from the closed form.
    """
    w = channel_widths(levels)
    C, M = rows.shape
    wide = np.full(C, int(w.max()), dtype=np.int64)
    ok_i = None
    try:
        if widest:
            packed_i = pack_rows(rows, wide, qmin)
            if len(packed_i) != result.widest_bits:
                raise AnalysisError(
                    f"packed {len(packed_i)} bits at the widest width, closed form {result.widest_bits}"
                )
            ok_i = bool(np.array_equal(unpack_rows(packed_i, wide, M, qmin, rows.dtype), rows))
            del packed_i
        packed_ii = pack_rows(rows, w, qmin)
        if len(packed_ii) != result.dense_bits:
            raise AnalysisError(f"packed {len(packed_ii)} bits densely, closed form {result.dense_bits}")
    except AnalysisError as exc:
        raise AnalysisError(f"{result.layer}: {exc}") from exc
    ok_ii = bool(np.array_equal(unpack_rows(packed_ii, w, M, qmin, rows.dtype), rows))
    return replace(result, widest_ok=ok_i, dense_ok=ok_ii)


def check_huffman(codes: np.ndarray, axis: int | None, result: PackingResult,
                  arrays: dict[str, np.ndarray] | None = None, *, max_code_length: int = 12,
                  chunk_size: int = 4096) -> PackingResult:
    """Really build (iii) and (iv): write ``codes`` in entropy's ``single`` and ``bitwidth`` layouts to a
    temporary file (``entropy.save`` with ``verify=True`` decodes it and compares it with ``codes``), and check
    that each written tensor takes the closed-form bits. Returns ``result`` with ``huffman_ok`` set; raises
    AnalysisError if a written size differs from the closed form."""
    import tempfile
    from pathlib import Path

    import entropy
    from entropy import EntropyError

    layouts = ["single"] + (["bitwidth"] if result.huffman_bitwidth_bits is not None else [])
    want = {"single": result.huffman_layer_bits, "bitwidth": result.huffman_bitwidth_bits}
    with tempfile.TemporaryDirectory(prefix="huffquant-packing-") as td:
        for lay in layouts:
            try:
                fi = entropy.save(Path(td) / f"{lay}.hqt", {result.layer: codes}, channel_axis={result.layer: axis},
                                  quant={result.layer: dict(arrays or {})}, layout=lay, durable=False, verify=True,
                                  max_code_length=max_code_length, chunk_size=chunk_size)
            except EntropyError as exc:
                raise AnalysisError(f"{result.layer}: packing {lay}: {exc}") from exc
            t = fi.tensor(result.layer)
            got = 8 * (t.total_bytes - t.metadata_bytes)
            if got != want[lay]:
                raise AnalysisError(f"{result.layer}: packing {lay} takes {got} bits in a file, "
                                    f"closed form {want[lay]}")
    return replace(result, huffman_ok=True)


def _rel_flat(rows: np.ndarray, qmin: np.ndarray | None, idx: np.ndarray | None = None) -> np.ndarray:
    """Codes relative to their channel's ``qmin`` as a flat array (``idx``: flat positions to take)."""
    r = np.ascontiguousarray(rows)
    C, M = r.shape
    flat = r.reshape(-1) if idx is None else r.reshape(-1)[idx]
    if qmin is None or not np.any(qmin):
        return flat
    q0 = np.asarray(qmin, dtype=np.int64).reshape(-1)
    chan = (np.arange(r.size) if idx is None else idx) // M
    return flat.astype(np.int64) - q0[chan]


def _pack_bytes(rel: np.ndarray, wmax: int) -> bytes:
    if wmax <= 4:
        flat = rel.astype(np.uint8, copy=False)
        if flat.size % 2:
            flat = np.concatenate((flat, np.zeros(1, dtype=np.uint8)))
        return ((flat[0::2] << 4) | flat[1::2]).astype(np.uint8).tobytes()
    if wmax <= 8:
        return rel.astype(np.uint8, copy=False).tobytes()
    return rel.astype("<u2").tobytes()


def byte_pack(rows: np.ndarray, widths: np.ndarray, qmin: np.ndarray | None = None) -> bytes:
    """The general-purpose baseline's input: codes relative to ``qmin``, two 4-bit values per byte
    (high nibble first, channel-major) when every width is <= 4 bits, else one byte per value
    (two little-endian bytes for widths above 8)."""
    wmax = int(np.max(widths)) if np.size(widths) else 0
    return _pack_bytes(_rel_flat(rows, qmin), wmax)


def zstd_bits_per_value(rows: np.ndarray, widths: np.ndarray, qmin: np.ndarray | None = None, *, level: int = 19,
                        sample_bytes: int | None = None, blocks: int = 16) -> tuple[float, float]:
    """zstd ``level`` size of the packed codes (:func:`byte_pack`) in bits per value, and the share of the
    values compressed.

    With ``sample_bytes`` and a larger input, ``blocks`` evenly spaced contiguous runs of values whose packed
    size totals about ``sample_bytes`` are packed and compressed as one frame (a deterministic sample: zstd
    level 19 runs at only a few MB/s), and the rate is that of the sample.
    """
    import zstandard

    r = np.asarray(rows)
    n = int(r.size)
    if n == 0:
        return 0.0, 1.0
    wmax = int(np.max(widths)) if np.size(widths) else 0
    per_byte = 2.0 if wmax <= 4 else (1.0 if wmax <= 8 else 0.5)
    cctx = zstandard.ZstdCompressor(level=level)
    want = None if sample_bytes is None else int(sample_bytes * per_byte)
    if want is None or n <= want:
        return 8.0 * len(cctx.compress(_pack_bytes(_rel_flat(r, qmin), wmax))) / n, 1.0
    block = max(2, (want // blocks) // 2 * 2)
    starts = (np.linspace(0, n - block, blocks).astype(np.int64) // 2) * 2
    idx = (starts[:, None] + np.arange(block)[None, :]).reshape(-1)
    rel = _rel_flat(r, qmin, idx)
    return 8.0 * len(cctx.compress(_pack_bytes(rel, wmax))) / idx.size, idx.size / n
