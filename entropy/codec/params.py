"""Stream parameters: what a decoder must know besides the codebook, the chunk index and the payload.

:class:`CodecParams` describes one coded stream: the symbol mode (plain values, pairs of values, run symbols, or
values stored in a fixed number of bits), the window of values that have symbols, the optional escape range of
values coded raw, the code-length limit and the chunk size. ``to_bytes`` / ``from_bytes`` are the only
serialization of these fields (a file stores the block opaquely); ``from_bytes`` and ``validate`` check every rule
of FORMAT.md §7.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from entropy.errors import StreamError
from entropy.codec.lengths import MAX_ALPHABET, MAX_SUPPORTED_LENGTH

__all__ = ["CodecParams", "MAX_RUNS", "MAX_ESCAPE_RANGE", "MAX_CHUNK_SIZE", "MAX_STORED_RANGE", "MODES",
           "SUPPORTED_DTYPES"]

#: dtypes the codec accepts and restores (names of numpy dtypes)
SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64")
#: the symbol modes: one value per symbol, two values per symbol, a run of the run value and one value per symbol,
#: and no code: every value stored in the bits its window needs
MODES = ("plain", "pairs", "runs", "stored")
#: most run prefixes (a run symbol stands for at most this many values)
MAX_RUNS = 256
#: widest escape range: raw escaped values take at most 32 bits
MAX_ESCAPE_RANGE = 1 << 32
#: most values per chunk
MAX_CHUNK_SIZE = 1 << 24
#: most values per row
MAX_ROW_LENGTH = 1 << 48
#: widest window of a stored stream: its values take at most 32 bits
MAX_STORED_RANGE = 1 << 32

_I64 = (-(1 << 63), (1 << 63) - 1)


@dataclass(frozen=True)
class CodecParams:
    """Parameters of one coded stream (FORMAT.md §7).

    group: k values per symbol for plain (1) and pairs (2); run symbols use 1.
    max_code_length: L, the code-length limit of the stream's code (bits).
    chunk_size: values per chunk (a multiple of group).
    value_min: first value of the window; value v in the window is base symbol v - value_min.
    value_range: R, base symbols in the window (values value_min .. value_min + R - 1).
    runs: 0, or the number of run prefixes: symbol r * V + b stands for r copies of the run value followed
        by the value of base symbol b (r < runs).
    run_symbol: base symbol of the run value (value_min + run_symbol); 0 without runs.
    escape_min, escape_range: 0 and 0 (no escapes), or the range of values that may be coded raw: base symbol
        R is then the escape symbol, followed by v - escape_min in escape_bits bits.
    row_length: 0 (the values are one row), or M: the values are rows of M values (their count a multiple of M),
        each row cut into its own chunks, so no chunk, pair or run crosses from one row into the next (a set of
        channels coded as one stream: its histogram is the sum of the rows', and channel ranges are chunk ranges).
    stored: no code: every value v is stored as v - value_min in :attr:`stored_bits` bits (the bits of
        value_range - 1, 2 <= value_range <= 2**32), MSB-first, one after the other; chunks are then fixed runs of
        values (no chunk index) and the stream's codebook is the empty code of one symbol.
    """

    group: int
    max_code_length: int
    chunk_size: int
    value_min: int
    value_range: int
    runs: int = 0
    run_symbol: int = 0
    escape_min: int = 0
    escape_range: int = 0
    row_length: int = 0
    stored: bool = False

    # -- derived sizes ---------------------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """"plain", "pairs", "runs" or "stored"."""
        if self.stored:
            return "stored"
        if self.group == 2:
            return "pairs"
        return "runs" if self.runs else "plain"

    @property
    def stored_bits(self) -> int:
        """Bits of each value of a stored stream: those of value_range - 1 (0 for other streams)."""
        return (self.value_range - 1).bit_length() if self.stored else 0

    @property
    def escape_bits(self) -> int:
        """Raw bits after each escape symbol (0 without escapes)."""
        return (self.escape_range - 1).bit_length() if self.escape_range else 0

    @property
    def base_symbols(self) -> int:
        """V: the window's R base symbols plus the escape symbol (R) when escapes are on."""
        return self.value_range + (1 if self.escape_range else 0)

    @property
    def alphabet_size(self) -> int:
        """Number of symbols: V (plain), V**2 (pairs), runs * V (run symbols) or 1 (stored: the empty code)."""
        if self.stored:
            return 1
        if self.runs:
            return self.runs * self.base_symbols
        return self.base_symbols**self.group

    @property
    def chunk_symbols(self) -> int:
        """Most symbols a full chunk holds (exactly this many for plain and pairs)."""
        return self.chunk_size // self.group

    @property
    def max_values_per_symbol(self) -> int:
        """Most values one symbol stands for: group, or runs for run symbols."""
        return self.runs if self.runs else self.group

    @property
    def max_symbol_bits(self) -> int:
        """Most bits one symbol takes: L plus the escape bits (stored: exactly :attr:`stored_bits`)."""
        if self.stored:
            return self.stored_bits
        return self.max_code_length + self.escape_bits

    @property
    def index_entry_bytes(self) -> int:
        """Bytes per chunk-index entry (2 or 4): 2 when a full chunk can never need more than 65535 bits; 0 for a
        stored stream (its chunks' sizes follow from their value counts: no index)."""
        if self.stored:
            return 0
        return 2 if self.chunk_symbols * self.max_symbol_bits <= 0xFFFF else 4

    def rows(self, n_values: int) -> tuple[int, int]:
        """(rows, values per row) of a stream of ``n_values`` values; raises StreamError when ``row_length`` does
        not divide the count."""
        n = int(n_values)
        M = self.row_length
        if not M:
            return (1, n) if n else (0, 0)
        if n % M:
            raise StreamError(f"{n} values are not whole rows of {M}")
        return n // M, M

    def n_chunks(self, n_values: int) -> int:
        """Chunks of a stream of ``n_values`` values (``ceil(M / C)`` per row of M values)."""
        rows, M = self.rows(n_values)
        return rows * -(-M // self.chunk_size)

    def chunk_starts(self, n_values: int) -> np.ndarray:
        """Index of the first value of each chunk, and the value count at the end: int64[n_chunks + 1]."""
        rows, M = self.rows(n_values)
        per_row = np.arange(0, M, self.chunk_size, dtype=np.int64)
        starts = (np.arange(rows, dtype=np.int64)[:, None] * M + per_row[None, :]).reshape(-1)
        return np.append(starts, np.int64(int(n_values)))

    def chunk_values(self, n_values: int) -> np.ndarray:
        """Values in each chunk: int64[n_chunks]."""
        return np.diff(self.chunk_starts(n_values))

    def index_bytes(self, n_chunks: int) -> int:
        """Bytes of the chunk index of ``n_chunks`` chunks."""
        return int(n_chunks) * self.index_entry_bytes

    def chunk_bit_bounds(self, n_values: int) -> tuple[np.ndarray, np.ndarray]:
        """Fewest and most payload bits of each chunk of a stream of ``n_values`` values (int64 arrays): every
        symbol takes 1 to ``max_symbol_bits`` bits and stands for 1 to ``max_values_per_symbol`` values (stored:
        exactly ``stored_bits`` per value)."""
        vals = self.chunk_values(n_values)
        if self.stored:
            return vals * self.stored_bits, vals * self.stored_bits
        most_syms = -(-vals // self.group)
        fewest_syms = -(-vals // self.max_values_per_symbol)
        return fewest_syms, most_syms * self.max_symbol_bits

    def payload_bit_bounds(self, n_values: int) -> tuple[int, int]:
        """Fewest and most payload bits of a stream of ``n_values`` values (a file's sanity bound: the payload
        size bounds the value count a stream can claim). Closed form, O(1): a hostile count allocates nothing."""
        if self.stored:
            self.rows(n_values)  # (whole rows)
            return int(n_values) * self.stored_bits, int(n_values) * self.stored_bits
        rows, M = self.rows(n_values)
        full, rest = divmod(M, self.chunk_size)
        vmax, k = self.max_values_per_symbol, self.group
        fewest = full * -(-self.chunk_size // vmax) + -(-rest // vmax)
        most = (full * -(-self.chunk_size // k) + -(-rest // k)) * self.max_symbol_bits
        return rows * fewest, rows * most

    # -- serialization ---------------------------------------------------------------------------------------------
    #: The block of :meth:`to_bytes` (little-endian): a 24-byte base - group u8, max_code_length u8, flags u16,
    #: chunk_size u32, value_min i64, value_range u64 - then, in this order, one extension per flag bit set:
    #: bit 0 run symbols (runs u16, run_symbol u16), bit 1 escapes (escape_min i64, escape_range u64), bit 2 rows
    #: (row_length u64); bit 3 (no extension) marks a stored stream. A plain or pair stream takes 24 bytes. The
    #: codec owns this block; a file stores it opaquely.
    _BASE = struct.Struct("<BBHIqQ")
    _RUNS = struct.Struct("<HH")
    _ESCAPE = struct.Struct("<qQ")
    _ROWS = struct.Struct("<Q")
    _FLAG_RUNS, _FLAG_ESCAPE, _FLAG_ROWS, _FLAG_STORED = 1, 2, 4, 8

    @property
    def block_bytes(self) -> int:
        """Bytes of :meth:`to_bytes` (24 to 52)."""
        return (self._BASE.size + (self._RUNS.size if self.runs else 0) + (self._ESCAPE.size if self.escape_range else 0)
                + (self._ROWS.size if self.row_length else 0))

    def to_bytes(self) -> bytes:
        """The stream-parameter block that a file stores for this stream (bytes; see ``_BASE``)."""
        self.validate()
        flags = ((self._FLAG_RUNS if self.runs else 0) | (self._FLAG_ESCAPE if self.escape_range else 0)
                 | (self._FLAG_ROWS if self.row_length else 0) | (self._FLAG_STORED if self.stored else 0))
        out = self._BASE.pack(self.group, self.max_code_length, flags, self.chunk_size, self.value_min, self.value_range)
        if self.runs:
            out += self._RUNS.pack(self.runs, self.run_symbol)
        if self.escape_range:
            out += self._ESCAPE.pack(self.escape_min, self.escape_range)
        if self.row_length:
            out += self._ROWS.pack(self.row_length)
        return out

    @classmethod
    def from_bytes(cls, buf: bytes | memoryview) -> CodecParams:
        """Parse and validate a stream-parameter block written by :meth:`to_bytes`. Raises StreamError."""
        b = bytes(buf)
        if len(b) < cls._BASE.size:
            raise StreamError(f"stream parameter block is {len(b)} bytes, fewer than its {cls._BASE.size}-byte base")
        group, max_len, flags, chunk, vmin, vrange = cls._BASE.unpack_from(b, 0)
        if flags & ~(cls._FLAG_RUNS | cls._FLAG_ESCAPE | cls._FLAG_ROWS | cls._FLAG_STORED):
            raise StreamError(f"stream parameter block has unknown flags {flags:#06x} (reserved bits must be zero)")
        fields = dict(group=group, max_code_length=max_len, chunk_size=chunk, value_min=vmin, value_range=vrange,
                      stored=bool(flags & cls._FLAG_STORED))
        pos = cls._BASE.size
        want = pos + sum(st.size for f, st in ((cls._FLAG_RUNS, cls._RUNS), (cls._FLAG_ESCAPE, cls._ESCAPE),
                                                (cls._FLAG_ROWS, cls._ROWS)) if flags & f)
        if len(b) != want:
            raise StreamError(f"stream parameter block is {len(b)} bytes, its flags {flags:#x} say {want}")
        if flags & cls._FLAG_RUNS:
            fields["runs"], fields["run_symbol"] = cls._RUNS.unpack_from(b, pos)
            pos += cls._RUNS.size
            if not fields["runs"]:
                raise StreamError("stream parameter block: the run-symbol flag is set with runs = 0")
        if flags & cls._FLAG_ESCAPE:
            fields["escape_min"], fields["escape_range"] = cls._ESCAPE.unpack_from(b, pos)
            pos += cls._ESCAPE.size
            if not fields["escape_range"]:
                raise StreamError("stream parameter block: the escape flag is set with escape_range = 0")
        if flags & cls._FLAG_ROWS:
            (fields["row_length"],) = cls._ROWS.unpack_from(b, pos)
            if not fields["row_length"]:
                raise StreamError("stream parameter block: the row flag is set with row_length = 0")
        params = cls(**fields)
        params.validate()
        return params

    def validate(self) -> None:
        """Raise StreamError if the parameters are inconsistent (FORMAT.md §7)."""
        for name in ("group", "max_code_length", "chunk_size", "value_min", "value_range", "runs", "run_symbol",
                     "escape_min", "escape_range", "row_length"):
            x = getattr(self, name)
            if not isinstance(x, (int, np.integer)) or isinstance(x, bool):
                raise StreamError(f"codec parameter {name} must be an integer, got {x!r}")
        if self.group not in (1, 2):
            raise StreamError(f"codec parameter group must be 1 or 2, got {self.group}")
        if not 1 <= self.max_code_length <= MAX_SUPPORTED_LENGTH:
            raise StreamError(f"max_code_length {self.max_code_length} outside 1..{MAX_SUPPORTED_LENGTH}")
        if self.chunk_size < 1 or self.chunk_size % self.group:
            raise StreamError(f"chunk_size {self.chunk_size} must be a positive multiple of group {self.group}")
        if self.chunk_size > MAX_CHUNK_SIZE:
            raise StreamError(f"chunk_size {self.chunk_size} exceeds 2**24 values")
        if not isinstance(self.stored, (bool, np.bool_)):
            raise StreamError(f"codec parameter stored must be a bool, got {self.stored!r}")
        if self.stored:
            if not 2 <= self.value_range <= MAX_STORED_RANGE:
                raise StreamError(f"value_range {self.value_range} of a stored stream outside 2..2**32")
            if self.group != 1 or self.runs or self.escape_range:
                raise StreamError("a stored stream takes neither pairs, run symbols nor escapes")
        elif not 1 <= self.value_range <= MAX_ALPHABET:
            raise StreamError(f"value_range {self.value_range} outside 1..{MAX_ALPHABET}")
        for name in ("value_min", "escape_min"):
            if not _I64[0] <= int(getattr(self, name)) <= _I64[1]:
                raise StreamError(f"{name} {getattr(self, name)} outside the int64 range")
        if self.runs:
            if not 2 <= self.runs <= MAX_RUNS:
                raise StreamError(f"runs {self.runs} outside 2..{MAX_RUNS} (0 = no run symbols)")
            if not 0 <= self.run_symbol < self.value_range:
                raise StreamError(f"run_symbol {self.run_symbol} outside the window's 0..{self.value_range - 1}")
        elif self.run_symbol:
            raise StreamError(f"run_symbol {self.run_symbol} without run symbols (runs = 0)")
        if self.escape_range:
            if not 2 <= self.escape_range <= MAX_ESCAPE_RANGE:
                raise StreamError(f"escape_range {self.escape_range} outside 2..2**32 (0 = no escapes)")
            lo, hi = int(self.escape_min), int(self.escape_min) + int(self.escape_range)
            if not lo <= int(self.value_min) <= int(self.value_min) + int(self.value_range) <= hi:
                raise StreamError(
                    f"window [{self.value_min}, {self.value_min + self.value_range - 1}] is not inside the escape "
                    f"range [{lo}, {hi - 1}]"
                )
        elif self.escape_min:
            raise StreamError(f"escape_min {self.escape_min} without escapes (escape_range = 0)")
        if not 0 <= self.row_length <= MAX_ROW_LENGTH:
            raise StreamError(f"row_length {self.row_length} outside 0..2**48")
        if self.group == 2 and (self.runs or self.escape_range):
            raise StreamError("pairs (group 2) take neither run symbols nor escapes")
        if self.alphabet_size > MAX_ALPHABET:
            raise StreamError(f"alphabet of {self.alphabet_size} symbols exceeds {MAX_ALPHABET}")

    def check_dtype(self, lo: int, hi: int, what: str = "values") -> None:
        """Raise StreamError unless the window and the escape range fit the integer bounds [lo, hi] of a dtype."""
        if self.value_min < lo or self.value_min + self.value_range - 1 > hi:
            raise StreamError(f"alphabet [{self.value_min}, {self.value_min + self.value_range - 1}] does not fit {what}")
        if self.escape_range and (self.escape_min < lo or self.escape_min + self.escape_range - 1 > hi):
            raise StreamError(
                f"escape range [{self.escape_min}, {self.escape_min + self.escape_range - 1}] does not fit {what}"
            )
