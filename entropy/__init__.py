"""entropy: canonical Huffman coding of integer tensors and the .hqt file format.

Depends only on numpy and numba (numba is imported lazily, on the first encode or
decode); never imports torch.
"""

from __future__ import annotations

from entropy.codebook import Codebook
from entropy.codec import Accounting, CodecParams, EncodedTensor, decode, decode_chunks, decode_parts, encode
from entropy.lengths import code_lengths
from entropy.measures import shannon_entropy
from entropy.fileinfo import FileInfo, TensorInfo
from entropy.reader import HQTFile, dequantize, info, load, load_quant, load_tensor
from entropy.writer import save

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
    "save",
    "load",
    "load_tensor",
    "info",
    "load_quant",
    "dequantize",
    "HQTFile",
    "FileInfo",
    "TensorInfo",
]
