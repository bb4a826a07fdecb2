"""Canonical Huffman codebooks: code lengths only, DEFLATE order, MSB-first codes.

A :class:`Codebook` holds one code length per symbol (0 = symbol absent). Codes are
assigned as in DEFLATE (RFC 1951, section 3.2.2): shorter codes first, codes of equal
length in increasing symbol order; each code is written most-significant bit first.

Validity (checked on build and on load):

* every length is in 0..MAX_SUPPORTED_LENGTH (24) and at most the caller's ``max_length``;
* the Kraft sum  sum(2**-len)  over present symbols is exactly 1 (a complete code), except
  (a) no symbol present (the empty code of an empty tensor) and (b) exactly one symbol
  present with length 1 (its code is the single bit 0; the bit 1 is invalid);
* an over-subscribed table (Kraft sum > 1) is always rejected.

Serialization (``to_bytes`` / ``from_bytes``)
=============================================
The first 4 bits (high nibble of byte 0) are the *mode* ``M``. ``n`` is the alphabet
size (number of symbols). Nibble streams are read high nibble first within each byte.

``M = 1`` / ``M = 2``: *dense nibbles, last length implied* (complete codes, all lengths
<= 15, 2 <= n). The following ``n - 1`` nibbles are the lengths of symbols ``0..n-2``;
the length of symbol ``n-1`` is implied by the Kraft sum: the remaining code space
``1 - sum`` must be 0 (symbol absent) or ``2**-l`` for some ``l`` in 1..15. ``M = 1`` means
``n`` is even (no pad; the table is exactly ``n/2`` bytes), ``M = 2`` means ``n`` is odd and
one zero pad nibble ends the table (``(n+1)/2`` bytes). A 16-symbol code takes 8 bytes.

``M = 3`` / ``M = 4``: *dense nibbles, all explicit* (any valid table with lengths <= 15).
The following ``n`` nibbles are the lengths of symbols ``0..n-1``. ``M = 3``: ``n`` odd, no
pad (``(n+1)/2`` bytes). ``M = 4``: ``n`` even, one zero pad nibble (``n/2 + 1`` bytes).
In modes 1..4, ``n`` follows from the byte count and the mode.

``M = 5``: *run-length bytes* (any valid table, lengths <= 24). Byte 0 is ``0x50``. Then
``n`` as an unsigned LEB128 varint (1 <= n <= 65536). Then tokens, one byte each, until
exactly ``n`` lengths are defined:

* ``0x00..0x18``: one symbol with that length (0 = absent);
* ``0x40``: a run of zero lengths; a LEB128 varint ``r`` follows and the run is ``r + 2`` long;
* ``0x80 | r`` (``r`` in 0..127): repeat the previous length ``r + 2`` more times
  (needs a previous symbol).

Varints are minimal: the last byte of a varint of two or more bytes is not zero (an overlong spelling of a
value is rejected). Any other token value, trailing bytes after ``n`` lengths, a run past ``n``, a
truncated or overlong varint, or a table that fails validation raises :class:`CodebookError`.
The low nibble of byte 0 must be 0 in modes 3..5 when nothing else occupies it: in
modes 1..4 it is the first length nibble. The writer picks the shortest encoding; of equally short ones, mode 5
first, then the explicit modes (3, 4), then the implied ones (1, 2), so for an odd ``n`` it writes mode 3 where
mode 2 would take as many bytes (readers accept both).
"""

from __future__ import annotations

import numpy as np

from entropy.errors import CodebookError
from entropy.codec.lengths import MAX_ALPHABET, MAX_SUPPORTED_LENGTH, code_lengths

__all__ = ["Codebook"]

_MODE_IMPLIED_EVEN = 1
_MODE_IMPLIED_ODD = 2
_MODE_EXPLICIT_ODD = 3
_MODE_EXPLICIT_EVEN = 4
_MODE_RLE = 5


def _kraft_units(lengths: np.ndarray) -> int:
    """Kraft sum scaled by 2**MAX_SUPPORTED_LENGTH (exact integer)."""
    present = lengths[lengths > 0].astype(np.int64)
    return int(np.sum(np.left_shift(np.int64(1), MAX_SUPPORTED_LENGTH - present)))


class Codebook:
    """An immutable canonical Huffman code: one length per symbol, 0 = absent.

    Attributes: ``lengths`` (uint8[alphabet_size], bits), ``alphabet_size`` (symbols),
    ``max_length`` (longest code present, bits; 0 for the empty code), ``codes``
    (uint32[alphabet_size], canonical codes right-aligned, 0 for absent symbols).
    """

    __slots__ = ("_lengths", "_codes", "_max_length", "_bytes")

    def __init__(self, lengths: np.ndarray, *, max_length: int | None = None) -> None:
        lens = np.asarray(lengths)
        if lens.ndim != 1:
            raise CodebookError(f"code lengths must be 1-D, got shape {lens.shape}")
        if lens.size == 0:
            raise CodebookError("a codebook needs an alphabet of at least 1 symbol")
        if lens.size > MAX_ALPHABET:
            raise CodebookError(f"alphabet of {lens.size} symbols exceeds the supported {MAX_ALPHABET}")
        if not np.issubdtype(lens.dtype, np.integer):
            raise CodebookError(f"code lengths must be integers, got dtype {lens.dtype}")
        if int(lens.min()) < 0:
            raise CodebookError("negative code length")
        limit = MAX_SUPPORTED_LENGTH if max_length is None else int(max_length)
        if not 1 <= limit <= MAX_SUPPORTED_LENGTH:
            raise CodebookError(f"max_length must be in 1..{MAX_SUPPORTED_LENGTH}, got {max_length!r}")
        longest = int(lens.max())
        if longest > limit:
            sym = int(np.argmax(lens))
            raise CodebookError(f"code length {longest} of symbol {sym} exceeds the maximum {limit} bits")
        lens = lens.astype(np.uint8)
        n_present = int(np.count_nonzero(lens))
        kraft = _kraft_units(lens)
        full = 1 << MAX_SUPPORTED_LENGTH
        if kraft > full:
            raise CodebookError(
                f"over-subscribed code lengths: Kraft sum {kraft / full:.6g} > 1 ({n_present} symbols)"
            )
        if n_present == 1:
            if longest != 1:
                raise CodebookError(f"a single-symbol code must have length 1, got {longest}")
        elif n_present > 1 and kraft != full:
            raise CodebookError(f"incomplete code lengths: Kraft sum {kraft / full:.6g} < 1 ({n_present} symbols)")
        lens.setflags(write=False)
        self._lengths = lens
        self._max_length = longest
        self._codes = None
        self._bytes = None

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_counts(cls, counts: np.ndarray, max_length: int | None = 12) -> Codebook:
        """Optimal codebook for ``counts`` (one count per symbol) with codes <= ``max_length`` bits.

        ``max_length=None`` builds the unlimited optimal Huffman code.
        """
        lens = code_lengths(np.asarray(counts), max_length)
        if lens.size == 0:
            raise CodebookError("counts must cover an alphabet of at least 1 symbol")
        return cls(lens, max_length=max_length)

    @classmethod
    def from_lengths(cls, lengths: np.ndarray, max_length: int | None = None) -> Codebook:
        """Codebook from explicit code lengths (bits); validates Kraft sum and ``max_length``."""
        return cls(lengths, max_length=max_length)

    # -- properties ---------------------------------------------------------------
    @property
    def lengths(self) -> np.ndarray:
        """Code length of each symbol in bits (uint8, read-only); 0 = absent."""
        return self._lengths

    @property
    def alphabet_size(self) -> int:
        """Number of symbols in the alphabet (present or not)."""
        return int(self._lengths.size)

    @property
    def max_length(self) -> int:
        """Longest code length present, in bits (0 for the empty code)."""
        return self._max_length

    @property
    def n_present(self) -> int:
        """Number of symbols with a code."""
        return int(np.count_nonzero(self._lengths))

    def canonical_order(self) -> np.ndarray:
        """Present symbols sorted by (length, symbol): the order codes are assigned in."""
        present = np.flatnonzero(self._lengths)
        return present[np.argsort(self._lengths[present], kind="stable")]

    @property
    def codes(self) -> np.ndarray:
        """Canonical code of each symbol (uint32, right-aligned, MSB-first); 0 for absent symbols."""
        if self._codes is None:
            codes = np.zeros(self.alphabet_size, dtype=np.uint32)
            order = self.canonical_order()
            if order.size:
                L = self._max_length
                ls = self._lengths[order].astype(np.int64)
                span = np.left_shift(np.int64(1), L - ls)  # code space of each symbol, in 2**-L units
                start = np.concatenate(([0], np.cumsum(span)[:-1]))
                codes[order] = (start >> (L - ls)).astype(np.uint32)
            codes.setflags(write=False)
            self._codes = codes
        return self._codes

    def average_length(self, counts: np.ndarray) -> float:
        """Average code length sum(p * len) in bits per symbol for the symbol ``counts``."""
        from entropy.codec.measures import average_code_length

        return average_code_length(counts, self._lengths)

    # -- serialization ------------------------------------------------------------
    @property
    def serialized_bits(self) -> int:
        """Size of :meth:`to_bytes` in bits."""
        return 8 * len(self.to_bytes())

    def to_bytes(self) -> bytes:
        """Compact serialization (see the module docstring); the shortest of the modes."""
        if self._bytes is None:
            cands = [_encode_rle(self._lengths)]
            if self._max_length <= 15:
                cands.append(_encode_dense(self._lengths, implied=False))
                if self.n_present >= 2 and self.alphabet_size >= 2:
                    cands.append(_encode_dense(self._lengths, implied=True))
            self._bytes = min(cands, key=len)
        return self._bytes

    @classmethod
    def from_bytes(cls, buf: bytes, max_length: int | None = None) -> Codebook:
        """Parse :meth:`to_bytes` output; never trusts ``buf`` (raises CodebookError)."""
        try:
            b = bytes(buf)
        except TypeError as exc:
            raise CodebookError(f"codebook bytes must be bytes-like, got {type(buf).__name__}") from exc
        if not b:
            raise CodebookError("empty codebook table (0 bytes)")
        mode = b[0] >> 4
        if mode in (_MODE_IMPLIED_EVEN, _MODE_IMPLIED_ODD, _MODE_EXPLICIT_ODD, _MODE_EXPLICIT_EVEN):
            lens = _decode_dense(b, mode)
        elif mode == _MODE_RLE:
            lens = _decode_rle(b)
        else:
            raise CodebookError(f"unknown codebook table mode {mode} in byte 0 (0x{b[0]:02x})")
        return cls(lens, max_length=max_length)

    # -- misc ---------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codebook) and np.array_equal(self._lengths, other._lengths)

    def __hash__(self) -> int:
        return hash(self._lengths.tobytes())

    def __repr__(self) -> str:
        return f"Codebook(alphabet_size={self.alphabet_size}, present={self.n_present}, max_length={self._max_length})"


# ---- dense nibble modes ---------------------------------------------------------


def _nibbles_to_bytes(nibbles: np.ndarray) -> bytes:
    nb = np.asarray(nibbles, dtype=np.uint8)
    assert nb.size % 2 == 0
    return ((nb[0::2] << 4) | nb[1::2]).astype(np.uint8).tobytes()


def _encode_dense(lengths: np.ndarray, *, implied: bool) -> bytes:
    n = lengths.size
    body = lengths[: n - 1] if implied else lengths
    if implied:
        mode = _MODE_IMPLIED_EVEN if n % 2 == 0 else _MODE_IMPLIED_ODD
    else:
        mode = _MODE_EXPLICIT_ODD if n % 2 == 1 else _MODE_EXPLICIT_EVEN
    nib = np.concatenate(([mode], body)).astype(np.uint8)
    if nib.size % 2:
        nib = np.concatenate((nib, [0])).astype(np.uint8)
    return _nibbles_to_bytes(nib)


def _decode_dense(b: bytes, mode: int) -> np.ndarray:
    arr = np.frombuffer(b, dtype=np.uint8)
    nib = np.empty(2 * arr.size, dtype=np.uint8)
    nib[0::2] = arr >> 4
    nib[1::2] = arr & 15
    body = nib[1:]
    padded = mode in (_MODE_IMPLIED_ODD, _MODE_EXPLICIT_EVEN)
    if padded:
        if body[-1] != 0:
            raise CodebookError(f"codebook table mode {mode}: pad nibble is {body[-1]}, expected 0")
        body = body[:-1]
    if mode in (_MODE_EXPLICIT_ODD, _MODE_EXPLICIT_EVEN):
        if body.size == 0:
            raise CodebookError("codebook table defines no symbol")
        return body.copy()
    # implied last length
    n = body.size + 1
    if n < 2:
        raise CodebookError("codebook table mode with implied last length needs at least 2 symbols")
    head = body.astype(np.int64)
    kraft = int(np.sum(np.left_shift(np.int64(1), 15 - head[head > 0])))
    rest = (1 << 15) - kraft
    if rest < 0:
        raise CodebookError(f"over-subscribed code lengths in codebook table (Kraft sum {kraft / 32768:.6g} > 1)")
    if rest == 0:
        last = 0
    else:
        if rest & (rest - 1):
            raise CodebookError(
                f"codebook table: remaining code space {rest}/32768 is not a power of two, "
                "so the implied last length is invalid"
            )
        last = 15 - (rest.bit_length() - 1)
        if last < 1:
            raise CodebookError("codebook table: implied last length would be 0 bits")
    return np.concatenate((head, [last])).astype(np.uint8)


# ---- run-length mode ------------------------------------------------------------


def _varint(x: int) -> bytes:
    out = bytearray()
    while True:
        byte = x & 0x7F
        x >>= 7
        if x:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(b: bytes, pos: int, what: str) -> tuple[int, int]:
    x = 0
    shift = 0
    while True:
        if pos >= len(b):
            raise CodebookError(f"codebook table truncated inside the {what} varint at byte {pos}")
        byte = b[pos]
        pos += 1
        x |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:  # one value, one spelling: a zero last byte adds nothing (FORMAT.md §5)
                raise CodebookError(f"codebook table: overlong {what} varint ending at byte {pos - 1}")
            return x, pos
        shift += 7
        if shift > 28:
            raise CodebookError(f"codebook table: {what} varint too long at byte {pos}")


def _encode_rle(lengths: np.ndarray) -> bytes:
    from entropy.codec.kernels import rle_tokens  # numba: loaded by the encoder already

    return bytes([_MODE_RLE << 4]) + _varint(lengths.size) + rle_tokens(lengths)


def _decode_rle(b: bytes) -> np.ndarray:
    if b[0] != _MODE_RLE << 4:
        raise CodebookError(f"codebook table mode 5: byte 0 must be 0x50, got 0x{b[0]:02x}")
    n, pos = _read_varint(b, 1, "alphabet size")
    if not 1 <= n <= MAX_ALPHABET:
        raise CodebookError(f"codebook table: alphabet size {n} outside 1..{MAX_ALPHABET}")
    out = np.zeros(n, dtype=np.uint8)
    i = 0
    prev = -1
    nb = len(b)
    while i < n:
        if pos >= nb:
            raise CodebookError(f"codebook table truncated: {i} of {n} lengths defined at byte {pos}")
        t = b[pos]
        pos += 1
        if t <= MAX_SUPPORTED_LENGTH:
            out[i] = t
            prev = t
            i += 1
        elif t == 0x40:
            r, pos = _read_varint(b, pos, "zero run")
            run = r + 2
            if i + run > n:
                raise CodebookError(f"codebook table: zero run of {run} at byte {pos} passes the alphabet end {n}")
            i += run  # already zero
            prev = 0
        elif t & 0x80:
            run = (t & 0x7F) + 2
            if prev <= 0:
                raise CodebookError(f"codebook table: repeat token at byte {pos - 1} without a previous length")
            if i + run > n:
                raise CodebookError(f"codebook table: repeat of {run} at byte {pos - 1} passes the alphabet end {n}")
            out[i : i + run] = prev
            i += run
        else:
            raise CodebookError(f"codebook table: invalid token 0x{t:02x} at byte {pos - 1}")
    if pos != nb:
        raise CodebookError(f"codebook table: {nb - pos} trailing bytes after {n} lengths")
    return out
