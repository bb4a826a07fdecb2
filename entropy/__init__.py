"""entropy: canonical Huffman coding of integer tensors and the .hqt file format.

Depends only on numpy and numba (numba is imported lazily, on the first encode or
decode); never imports torch.

The file API: :func:`save` (with :func:`plan_file` for the exact size of a file before writing it and
:func:`write_plan` to write such a plan), :func:`load`,
:func:`load_tensor`, :func:`load_quant`, :func:`dequantize`, :func:`info`, :class:`HQTFile`. Tensor layouts:
:func:`layout_choices` / :func:`choose_layout`. The size arithmetic of the format (``align``,
``tensor_record_bytes``, ``codebook_record_bytes``, ``index_bytes``, ``metadata_arrays``, ...) is public so that
no one needs to copy its constants.

The codec: :func:`encode` / :func:`decode` (plain values, pairs or run symbols, escapes for any integer
alphabet, or values stored in the bits of their window where no code is smaller, chosen by exact size); :func:`symbol_histograms` and :func:`plan_from_counts` give exact stream sizes
from per-row histograms without encoding (for layout searches).

Threads: every call that codes or decodes takes ``threads`` (None, the default: all cores of the process; 1: the
calling thread only); large streams are cut into groups of chunks coded or decoded in parallel, with the same
bytes and values whatever the thread count (:mod:`entropy.threads`).
"""

from __future__ import annotations

from entropy.codebook import Codebook
from entropy.codec import Accounting, CodecParams, EncodedTensor, decode, decode_chunks, decode_parts, encode
from entropy.fileformat import (
    ALIGNMENT, FORMAT_VERSION, LAYOUTS, align, array_record_bytes, codebook_record_bytes, data_bytes, header_bytes,
    index_bytes, map_bytes, payload_bytes, stream_record_bytes, tensor_record_bytes,
)
from entropy.fileinfo import FileInfo, StreamInfo, TensorInfo
from entropy.layouts import LayoutChoice, choose_layout, layout_choices
from entropy.lengths import code_lengths
from entropy.measures import shannon_entropy
from entropy.plan import StreamPlan, plan_from_counts, symbol_histograms
from entropy.planner import FilePlan, metadata_arrays, plan_file
from entropy.reader import HQTFile, dequantize, info, load, load_quant, load_tensor
from entropy.writer import save, write_plan

__all__ = [
    "Codebook",
    "CodecParams",
    "Accounting",
    "EncodedTensor",
    "encode",
    "decode",
    "decode_chunks",
    "decode_parts",
    "shannon_entropy",
    "code_lengths",
    "symbol_histograms",
    "plan_from_counts",
    "StreamPlan",
    "save",
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
    "LayoutChoice",
    "layout_choices",
    "choose_layout",
    "LAYOUTS",
    "FORMAT_VERSION",
    "ALIGNMENT",
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
]
