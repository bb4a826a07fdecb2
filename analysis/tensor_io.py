"""Read and write dicts of numpy arrays as .npy, .npz, .pt or .safetensors files.

No pickle: .npy/.npz are read with ``allow_pickle=False``, .pt with
``torch.load(weights_only=True)``. torch is imported only for .pt files. Outputs are
written atomically (temporary file + rename).

A .npy file holds one array; read, it is named after the file's stem. A .pt file may
hold a state dict or any (nested) dict of tensors; nested keys are joined with ".";
non-tensor entries are skipped with a log message.

Names become member names (.npz) or keys (.safetensors, .pt) that other tools may turn
into paths, so only plain names are written there (see :func:`name_problem`); anything
else raises :class:`TensorNameError` before a byte is written. A .npy file stores no name.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from analysis.errors import InputFormatError, TensorNameError
from entropy import FileOptions, atomic_write

__all__ = [
    "SUFFIXES", "read_tensors", "write_tensors", "suffix_of", "name_problem", "check_names", "quantize_tensors",
    "encode_file", "decode_file",
]

logger = logging.getLogger(__name__)

SUFFIXES = (".npy", ".npz", ".pt", ".safetensors")


def suffix_of(path: str | os.PathLike[str]) -> str:
    """The tensor-file kind of ``path`` by extension (``.pth`` counts as ``.pt``)."""
    if os.path.isdir(path):
        raise InputFormatError(f"{os.fspath(path)}: is a directory; give a tensor file ({', '.join(SUFFIXES)})")
    suffix = Path(path).suffix.lower()
    if suffix == ".pth":
        suffix = ".pt"
    if suffix not in SUFFIXES:
        raise InputFormatError(f"{path}: unsupported extension {suffix or '(none)'!r}; use one of {', '.join(SUFFIXES)}")
    return suffix


def name_problem(name: str) -> str | None:
    """Why tensor ``name`` is not plain enough to be written into a .npz/.safetensors/.pt file, or None.

    Plain: non-empty, no NUL or other control character, no backslash, not absolute (no leading
    "/", no drive letter such as "C:"), and no empty, "." or ".." component between slashes.
    "layer1/weight" is plain (inside a .npz it is a member in a sub-folder); "../../x" is not.
    """
    if not name:
        return "it is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it holds a NUL or control character"
    if "\\" in name:
        return "it holds a backslash (a path separator on Windows)"
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":" and name[0].isalpha()):
        return "it is an absolute path"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return f"it has {'an empty' if not part else repr(part)} path component"
    return None


def check_names(names: list[str] | Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Raise :class:`TensorNameError` for the first name that :func:`name_problem` refuses, for output ``path``."""
    for name in names:
        why = name_problem(name)
        if why is not None:
            raise TensorNameError(
                f"tensor {name!r} cannot be written into {os.fspath(path)}: {why}; write it alone to a .npy file "
                f"(huffquant decode FILE -o OUT.npy --tensor NAME), which stores no name"
            )


def _torch_to_numpy(name: str, t: Any) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    if t.is_quantized:
        raise InputFormatError(f"tensor {name!r} is a torch quantized tensor; store its int_repr() instead")
    if t.dtype == torch.bfloat16:
        t = t.float()  # numpy has no bfloat16; float32 holds every bfloat16 exactly
    return t.numpy()


def _flatten(obj: Mapping[str, Any], prefix: str, out: dict[str, np.ndarray], path: str) -> None:
    import torch

    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            out[name] = _torch_to_numpy(name, v)
        elif isinstance(v, np.ndarray):
            out[name] = v
        elif isinstance(v, Mapping):
            _flatten(v, f"{name}.", out, path)
        else:
            logger.info("%s: skipping non-tensor entry %r (%s)", path, name, type(v).__name__)


def read_tensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of a .npy/.npz/.pt/.safetensors file, keyed by name (file order)."""
    p = os.fspath(path)
    suffix = suffix_of(p)
    if not os.path.exists(p):
        raise InputFormatError(f"{p}: no such file")
    try:
        if suffix == ".npy":
            return {Path(p).stem: np.load(p, allow_pickle=False)}
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            return dict(load_file(p))
        import torch

        obj = torch.load(p, map_location="cpu", weights_only=True)
    except InputFormatError:
        raise
    except Exception as exc:  # each library has its own error types for a bad file
        from quant.torch_files import first_line, load_error_line

        why = load_error_line(exc) if suffix == ".pt" else first_line(exc)
        raise InputFormatError(f"{p}: cannot read as {suffix}: {why}") from exc
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, torch.Tensor):
        out[Path(p).stem] = _torch_to_numpy(Path(p).stem, obj)
    elif isinstance(obj, Mapping):
        _flatten(obj, "", out, p)
    else:
        raise InputFormatError(f"{p}: holds a {type(obj).__name__}, not a tensor or a dict of tensors")
    if not out:
        raise InputFormatError(f"{p}: holds no tensors")
    return out


def write_tensors(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray]) -> None:
    """Write ``tensors`` by extension; .npy needs exactly one array. Atomic.

    Names must be plain for .npz, .safetensors and .pt (:func:`name_problem`), else
    :class:`TensorNameError` and nothing is written.
    """
    p = os.fspath(path)
    suffix = suffix_of(p)
    if suffix != ".npy":
        check_names(tensors, p)
    arrays = {k: np.asarray(v, order="C") for k, v in tensors.items()}  # keeps 0-d arrays 0-d
    if suffix == ".npy":
        if len(arrays) != 1:
            raise InputFormatError(f"{p}: a .npy file holds one array, got {len(arrays)} (pick one, or use .npz)")
        with atomic_write(p) as fh:
            np.save(fh, next(iter(arrays.values())), allow_pickle=False)
    elif suffix == ".npz":
        # np.savez(**arrays) would reject a tensor named "file"; write the zip directly
        with atomic_write(p) as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
            for k, v in arrays.items():
                with zf.open(f"{k}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, v, allow_pickle=False)
    elif suffix == ".safetensors":
        from safetensors.numpy import save

        try:
            data = save(arrays)
        except Exception as exc:
            raise InputFormatError(f"{p}: cannot write as .safetensors: {exc}") from exc
        with atomic_write(p) as fh:
            fh.write(data)
    else:
        import torch

        try:
            tensors_t = {k: torch.from_numpy(v) for k, v in arrays.items()}
        except TypeError as exc:
            raise InputFormatError(f"{p}: cannot convert to torch tensors: {exc}") from exc
        with atomic_write(p) as fh:
            torch.save(tensors_t, fh)


# --------------------------------------------------------------------------- .hqt conversions


def quantize_tensors(
    tensors: Mapping[str, np.ndarray], *, bits: int | None, clip: str | None, per_channel: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Integer tensors pass through; float ones are quantized with ``quant.arrays.quantize_array``.

    Returns (integer arrays, per-tensor quantization metadata). ``per_channel`` quantizes
    tensors of 2+ dimensions along axis 0 (output channels). Floats without ``bits`` and
    ``clip`` raise :class:`InputFormatError`.
    """
    ints: dict[str, np.ndarray] = {}
    meta: dict[str, dict[str, Any]] = {}
    floats = [k for k, v in tensors.items() if v.dtype.kind == "f"]
    if floats and (bits is None or clip is None):
        raise InputFormatError(
            f"{len(floats)} float tensor(s) (e.g. {floats[0]!r}) need quantization: give --bits N --clip METHOD"
        )
    if floats:
        from quant.arrays import quantize_array  # imports torch: only for float input
    for name, v in tensors.items():
        if v.dtype.kind == "f":
            axis = 0 if per_channel and v.ndim >= 2 else None
            qt = quantize_array(v, bits=bits, clip=clip, axis=axis)
            codes = qt.codes
            ints[name] = codes.detach().cpu().numpy() if hasattr(codes, "detach") else np.asarray(codes)
            meta[name] = dict(qt.metadata())
        elif v.dtype.kind == "b":
            raise InputFormatError(f"tensor {name!r} is boolean; convert it to an integer type first")
        elif v.dtype.kind in "iu":
            ints[name] = v
        else:
            raise InputFormatError(f"tensor {name!r} has unsupported dtype {v.dtype}")
    return ints, meta


def encode_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    bits: int | None = None,
    clip: str | None = None,
    per_channel: bool = False,
    metadata: Mapping[str, str] | None = None,
    options: FileOptions | None = None,
    threads: int | None = None,
):
    """Read a tensor file, quantize floats if asked, and write one .hqt file; returns its FileInfo.

    ``options`` (:class:`entropy.FileOptions`: codec, channel axis, layout, verification...) and ``threads`` are
    those of :func:`entropy.save`.
    """
    from entropy import save

    tensors = read_tensors(input_path)
    ints, quant = quantize_tensors(tensors, bits=bits, clip=clip, per_channel=per_channel)
    meta = {"source": Path(input_path).name}
    if bits is not None and quant:
        meta.update({"method": f"{clip}", "bits": str(bits)})
    meta.update(metadata or {})
    return save(output_path, ints, meta, options=options, quant=quant, threads=threads)


def decode_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    names: list[str] | None = None,
    dequantize: bool = False,
    max_decoded_bytes: int | None = None,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Decode an .hqt file (all tensors or ``names``) into a tensor file, by extension.

    ``dequantize``: tensors with a stored ``scale`` are written as float32
    ``(q - zero_point) * scale``; tensors without one are written as stored.
    ``max_decoded_bytes``: refuse (before decoding) when the selected tensors would decode to more bytes.
    ``threads``: as for :func:`entropy.load`. Returns what was written.
    """
    from entropy import HQTFile

    suffix = suffix_of(output_path)  # fail before decoding on a bad extension or name
    out: dict[str, np.ndarray] = {}
    with HQTFile(input_path, max_decoded_bytes=max_decoded_bytes) as f:
        selected = names or f.names
        if suffix != ".npy":
            check_names(selected, output_path)
        f.check_decoded_bytes(selected, dequantize=dequantize)  # all of them are held at once
        for name in selected:
            if dequantize and "scale" in f.quant(name):
                out[name] = f.dequantize(name, threads=threads)
            else:
                if dequantize:
                    logger.info("tensor %r has no quantization parameters; written as stored", name)
                out[name] = f.read(name, threads=threads)
    write_tensors(output_path, out)
    return out
