"""The ``.hqt`` file API in one place (re-exports; the format is specified in ``entropy/FORMAT.md``).

Public API::

    save(path, tensors, metadata=None, *, quant=None, max_code_length=12, chunk_size=4096,
         group="auto", share_codebooks=False, channel_axis=None, layout="auto", durable=True,
         verify=False, threads=None) -> FileInfo
    plan_file(tensors, metadata=None, **same options) -> FilePlan   # exact size, nothing written
    write_plan(plan, path, *, durable=True, verify=False, threads=None) -> FileInfo # write a plan (file_bytes exactly)
    load(path, *, max_decoded_bytes=None, threads=None) -> dict[str, np.ndarray]
    load_tensor(path, name, *, channels=None, max_decoded_bytes=None, threads=None) -> np.ndarray
    load_quant(path, name) -> dict
    dequantize(path, name, *, max_decoded_bytes=None, threads=None) -> np.ndarray   # float32
    info(path) -> FileInfo                        # header only, no decoding
    HQTFile(path, *, max_decoded_bytes=None)      # random-access reader (context manager)

The implementation is split by job: :mod:`entropy.format` (byte layout, records, size arithmetic,
parsing primitives), :mod:`entropy.file.header` (parsing a header; version-1 records in
:mod:`entropy.file.format_v1`), :mod:`entropy.file.info` (what the header says, byte
accounting), :mod:`entropy.layout.search` (the layout choice), :mod:`entropy.file.plan` (a whole file's plan),
:mod:`entropy.file.reader` and :mod:`entropy.file.writer`. ``threads`` (None: all cores; 1: the calling thread only) is
the codec's (:mod:`entropy.codec.threads`); files are the same bytes whatever it is.
"""

from __future__ import annotations

from entropy.format import ALIGNMENT, FORMAT_VERSION, MAGIC, PREAMBLE_SIZE
from entropy.file.info import FileInfo, StreamInfo, TensorInfo
from entropy.file.plan import FilePlan, plan_file
from entropy.file.reader import HQTFile, dequantize, info, load, load_quant, load_tensor
from entropy.file.writer import save, write_plan

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "ALIGNMENT",
    "PREAMBLE_SIZE",
    "TensorInfo",
    "StreamInfo",
    "FileInfo",
    "FilePlan",
    "plan_file",
    "write_plan",
    "HQTFile",
    "save",
    "load",
    "load_tensor",
    "load_quant",
    "dequantize",
    "info",
]
