"""The ``.hqt`` file API in one place (re-exports; the format is specified in ``entropy/FORMAT.md``).

Public API::

    save(path, tensors, metadata=None, *, quant=None, max_code_length=12,
         chunk_size=4096, group="auto", share_codebooks=False, durable=True) -> FileInfo
    load(path, *, max_decoded_bytes=None) -> dict[str, np.ndarray]
    load_tensor(path, name, *, max_decoded_bytes=None) -> np.ndarray
    load_quant(path, name) -> dict
    dequantize(path, name, *, max_decoded_bytes=None) -> np.ndarray   # float32
    info(path) -> FileInfo                        # header only, no decoding
    HQTFile(path, *, max_decoded_bytes=None)      # random-access reader (context manager)

The implementation is split by job: :mod:`entropy.fileformat` (byte layout, records, parsing),
:mod:`entropy.fileinfo` (what the header says, byte accounting), :mod:`entropy.reader` and
:mod:`entropy.writer`.
"""

from __future__ import annotations

from entropy.fileformat import ALIGNMENT, FORMAT_VERSION, MAGIC, PREAMBLE_SIZE
from entropy.fileinfo import FileInfo, TensorInfo
from entropy.reader import HQTFile, dequantize, info, load, load_quant, load_tensor
from entropy.writer import save

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "ALIGNMENT",
    "PREAMBLE_SIZE",
    "TensorInfo",
    "FileInfo",
    "HQTFile",
    "save",
    "load",
    "load_tensor",
    "load_quant",
    "dequantize",
    "info",
]
