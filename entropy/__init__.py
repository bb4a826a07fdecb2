"""entropy: canonical Huffman coding of integer tensors and the .hqt file format.

Depends only on numpy and numba (numba is imported lazily, on the first encode or
decode); never imports torch. Everything below is importable from ``entropy`` itself, the package's one front
door; the modules behind it are grouped in three layers, each importing only those below it:

* :mod:`entropy.codec`: one integer array <-> one chunked canonical-Huffman stream. :func:`encode` /
  :func:`decode` (plain values, pairs or run symbols, escapes for any integer alphabet, or values stored in the
  bits of their window where no code is smaller, chosen by exact size; :class:`CodecOptions`);
  :func:`symbol_histograms` and :func:`plan_from_counts` give exact stream sizes from per-row histograms without
  encoding; :func:`code_lengths`, :func:`shannon_entropy`, :func:`counts_of`.
* :mod:`entropy.layout`: how a tensor is split into streams. :func:`layout_choices` / :func:`choose_layout` /
  :func:`best_layout`, from per-channel counts (:func:`tensor_counts`, :func:`channel_entropies`,
  :func:`channel_payload_bits`, :func:`channel_rows`).
* :mod:`entropy.file`: the ``.hqt`` file. :func:`save` (:class:`FileOptions`; :func:`plan_file` for the exact
  size of a file before writing it and :func:`write_plan` to write such a plan), :func:`load`,
  :func:`load_tensor`, :func:`load_quant`, :func:`dequantize`, :func:`info`, :class:`HQTFile`;
  :func:`atomic_write` for any file that must be replaced whole or not at all.

The byte layout itself (:mod:`entropy.format`, specified in ``FORMAT.md``) sits between the codec and the layout
search; its size arithmetic (``align``, ``tensor_record_bytes``, ``codebook_record_bytes``, ``index_bytes``,
``metadata_arrays``, ...) is public so that no one needs to copy its constants. Every error is an
:class:`EntropyError` (:mod:`entropy.errors`).

Threads: every call that codes or decodes takes ``threads`` (None, the default: all cores of the process; 1: the
calling thread only); large streams are cut into groups of chunks coded or decoded in parallel, with the same
bytes and values whatever the thread count. :func:`using_threads` sets the default for a block of calls;
:func:`available_cores` is what None means.
"""

from __future__ import annotations

from entropy.codec.codebook import Codebook
from entropy.codec.lengths import code_lengths
from entropy.codec.measures import counts_of, shannon_entropy
from entropy.codec.modes import StreamPlan, plan_from_counts, symbol_histograms
from entropy.codec.options import CodecOptions
from entropy.codec.params import CodecParams
from entropy.codec.streams import Accounting, EncodedTensor, decode, decode_chunks, decode_parts, encode
from entropy.codec.threads import available_cores
from entropy.codec.threads import using as using_threads
from entropy.errors import (
    CodebookError, EntropyError, FormatError, IntegrityError, MissingTensorError, StreamError, SymbolError,
)
from entropy.file.atomic import atomic_write
from entropy.file.info import FileInfo, StreamInfo, TensorInfo
from entropy.file.options import FileOptions
from entropy.file.plan import FilePlan, metadata_arrays, plan_file
from entropy.file.reader import HQTFile, dequantize, info, load, load_quant, load_tensor
from entropy.file.writer import save, write_plan
from entropy.format import (
    ALIGNMENT, FORMAT_VERSION, LAYOUTS, MAGIC, PREAMBLE_SIZE, align, array_record_bytes, codebook_record_bytes,
    data_bytes, header_bytes, index_bytes, map_bytes, payload_bytes, stream_record_bytes, tensor_record_bytes,
)
from entropy.layout.channel_counts import TensorCounts, channel_entropies, channel_payload_bits, tensor_counts
from entropy.layout.channels import channel_rows
from entropy.layout.search import CLUSTER_COUNTS, LayoutChoice, best_layout, choose_layout, layout_choices

__all__ = [
    # the codec
    "Codebook",
    "CodecParams",
    "CodecOptions",
    "Accounting",
    "EncodedTensor",
    "encode",
    "decode",
    "decode_chunks",
    "decode_parts",
    "shannon_entropy",
    "counts_of",
    "code_lengths",
    "symbol_histograms",
    "plan_from_counts",
    "StreamPlan",
    "available_cores",
    "using_threads",
    # the layout search
    "LayoutChoice",
    "layout_choices",
    "choose_layout",
    "best_layout",
    "CLUSTER_COUNTS",
    "TensorCounts",
    "tensor_counts",
    "channel_entropies",
    "channel_payload_bits",
    "channel_rows",
    # the file
    "save",
    "FileOptions",
    "plan_file",
    "write_plan",
    "FilePlan",
    "metadata_arrays",
    "load",
    "load_tensor",
    "info",
    "load_quant",
    "dequantize",
    "HQTFile",
    "FileInfo",
    "TensorInfo",
    "StreamInfo",
    "atomic_write",
    # the format's constants and size arithmetic
    "LAYOUTS",
    "FORMAT_VERSION",
    "ALIGNMENT",
    "MAGIC",
    "PREAMBLE_SIZE",
    "align",
    "codebook_record_bytes",
    "stream_record_bytes",
    "tensor_record_bytes",
    "array_record_bytes",
    "map_bytes",
    "index_bytes",
    "payload_bytes",
    "data_bytes",
    "header_bytes",
    # errors
    "EntropyError",
    "CodebookError",
    "StreamError",
    "SymbolError",
    "FormatError",
    "IntegrityError",
    "MissingTensorError",
]
