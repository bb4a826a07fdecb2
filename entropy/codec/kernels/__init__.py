"""Compiled (numba) kernels of the codec, behind one small interface.

Public functions (all single-threaded, working on chunk ranges; numpy arrays in, numpy arrays out):

* :func:`count_symbols` / :func:`count_rows` - symbol histograms (of a stream, or of every row of a 2-D array
  coded one stream per row), with the alphabet check; :func:`count_buckets` - coarse value histograms;
  :func:`raw_counts` - window-free counts of 1- and 2-byte values (or byte pairs), :func:`distinct_pairs`;
* :func:`encode_symbols` - canonical-Huffman bitstream of a stream, per-chunk bit counts;
* :func:`decode_symbols` (plain values, pairs) and :func:`decode_runs` (run symbols, escapes) - table-driven
  decoders of a range of chunks into values (they build their own tables, so the layout can change behind them);
* :func:`huffman_rows`, :func:`package_merge`, :func:`rle_tokens` - code lengths and their serialization;
  :func:`huffman_cost` - the optimal prefix code's payload bits, without the lengths;
* :func:`decode_stored` (and :func:`encode_symbols` for them) - stored streams, values in a fixed number of bits.

Symbols (FORMAT.md §7): a value ``v`` of the window is base symbol ``v - value_min`` in ``[0, R)``; pairs
``(a, b)`` are ``a * R + b`` (an odd count padded with base symbol 0); with escapes base symbol ``R`` is the
escape, followed by ``v - escape_min`` in ``E`` raw bits; run symbol ``r * V + b`` stands for ``r`` run values
and then base symbol ``b`` (``V = R``, or ``R + 1`` with escapes). Runs never cross a chunk boundary.

Bitstream: MSB-first, chunks concatenated without padding, zero bits up to the next byte at the end.

The decoders follow the ideas of Huff0 (zstd): a flat table indexed by the next ``T`` bits, a 64-bit window
loaded from any byte of the payload (one unaligned big-endian load), several lookups per load, and several chunks
decoded interleaved so the CPU overlaps their independent dependency chains. 1-byte values of a code of at most
12 bits use a 12-bit table whose entries hold up to 5 values each (one 8-byte store per lookup; four chunks
interleaved); other alphabets of at most 256 symbols a two-symbol table (Huff0's X2 idea: ``T = max(L, 11)``, two
chunks interleaved); other codes a one-symbol table (``T = L``, the longest code; four chunks interleaved).
Run symbols fill a chunk with the run value first and then write one value per symbol.

They never trust the stream: a lookup moves at most ``L`` (+ escape) bits and yields at least one
value, a chunk has a fixed value count, and the word array is padded for that worst
case, so a damaged stream cannot read out of bounds or loop forever; invalid codes, symbols that pass the
chunk's end, escaped values out of range and chunks that do not end on their recorded bit count are reported
by chunk number. This package imports numba, so the codec imports it lazily (``import entropy`` stays fast);
kernels compile on first use and are cached on disk (``cache=True``).
"""

from entropy.codec.kernels.common import DecodeFailure
from entropy.codec.kernels.count import count_buckets, count_rows, count_symbols, distinct_pairs, raw_counts
from entropy.codec.kernels.decode import decode_symbols, decode_table, decode_table_x2
from entropy.codec.kernels.decode_runs import decode_runs
from entropy.codec.kernels.encode import encode_symbols
from entropy.codec.kernels.huffman import huffman_cost, huffman_rows, package_merge, rle_tokens
from entropy.codec.kernels.stored import decode_stored

__all__ = [
    "count_symbols", "encode_symbols", "decode_symbols", "decode_table", "decode_table_x2", "DecodeFailure",
    "huffman_rows", "package_merge", "rle_tokens", "count_rows", "count_buckets", "decode_runs", "raw_counts",
    "distinct_pairs", "decode_stored", "huffman_cost",
]
