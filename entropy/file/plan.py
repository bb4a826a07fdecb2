"""Planning an ``.hqt`` file: every tensor's layout, codebooks and exact sizes, before a payload bit is written.

:func:`plan_file` takes what :func:`entropy.save` takes and returns a :class:`FilePlan` whose ``file_bytes`` is
the exact size of the file :func:`entropy.write_plan` (or ``save``) then writes.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from entropy.codec.codebook import Codebook
from entropy.codec.streams import EncodedTensor, prepare_encode
from entropy.errors import EntropyError, FormatError
from entropy.format import (
    DTYPE_CODES, MAX_NDIM, TENSOR_DTYPE_CODES, data_bytes, dtype_code, header_bytes,
)
from entropy.codec.options import CodecOptions
from entropy.file.options import FileOptions
from entropy.layout.search import LayoutChoice, best_layout, layout_choices, single_layout
from entropy.codec.lengths import MAX_ALPHABET

if TYPE_CHECKING:
    from entropy.file.info import FileInfo

__all__ = ["TensorPlan", "FilePlan", "plan_file", "metadata_arrays"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False, slots=True)
class TensorPlan:
    """One tensor of a planned file: its source, chosen layout and stored metadata arrays."""

    name: str
    dtype_code: int
    shape: tuple[int, ...]
    choice: LayoutChoice
    arrays: dict[str, np.ndarray]
    values: np.ndarray | None  # the integer values (None for a tensor given already encoded)


@dataclass(frozen=True, eq=False)
class FilePlan:
    """A file fixed down to its last byte: metadata, codebook table, tensors; ``file_bytes`` exact."""

    metadata: dict[str, str]
    codebooks: list[bytes]  # the file's codebook table (identical tables stored once)
    tensors: list[TensorPlan]
    header_bytes: int  # preamble + header, padded
    file_bytes: int
    options: FileOptions = FileOptions()  # what it was planned with (write_plan takes durable and verify from it)


@functools.lru_cache(maxsize=1)
def _tool_name() -> str:
    """``huffquant <version>`` (read once: the package metadata lookup parses files)."""
    try:
        from importlib.metadata import version

        return f"huffquant {version('huffquant')}"
    except Exception:  # not installed as a distribution
        return "huffquant"


def _as_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise FormatError(f"file metadata must map str to str; got {k!r}: {type(v).__name__}")
        out[k] = v
    if "tool" not in out:
        out["tool"] = _tool_name()
    return out


def _stored_axis(name: str, v: Any, ndim: int) -> np.ndarray:
    """The ``axis`` entry as the file stores it (FORMAT.md §4.3): one integer in ``0..ndim-1``, a negative one
    counted from the end as numpy does; anything else raises FormatError."""
    a = np.asarray(v)
    if a.ndim != 0 or a.dtype.kind not in "iu":
        raise FormatError(f"tensor {name!r}: metadata 'axis' must be one integer (None for per-tensor "
                          f"parameters), got {v!r}")
    ax = int(a)
    if not -ndim <= ax < ndim:
        raise FormatError(f"tensor {name!r}: metadata 'axis' {ax} is out of range for {ndim} dimensions")
    return np.asarray(ax % ndim, dtype=a.dtype)


def metadata_arrays(name: str, meta: Mapping[str, Any] | None, ndim: int | None = None) -> dict[str, np.ndarray]:
    """Tensor ``name``'s quantization metadata (the ``quant`` entry of :func:`entropy.save`) as the arrays the file
    stores: Python ints as int64, floats as float64, bools as bool, ``None`` values left out, every other array in
    its own dtype and shape (nothing is narrowed or collapsed here). With the tensor's ``ndim``, ``axis`` must be
    one integer in ``-ndim..ndim-1`` and is stored non-negative (``axis=None``, or no ``axis``, means per-tensor
    parameters: nothing is stored). Sizes computed from them (:func:`entropy.array_record_bytes`,
    :func:`entropy.layout_choices`) are the record's. Raises FormatError for a value the format cannot store.

    >>> metadata_arrays("w", {"scale": 0.5, "axis": -1, "zero_point": None}, ndim=2)
    {'scale': array(0.5), 'axis': array(1)}
    """
    out: dict[str, np.ndarray] = {}
    for k, v in (meta or {}).items():
        if v is None:  # e.g. axis=None for per-tensor parameters: absent means None
            continue
        if k == "axis" and ndim is not None:
            v = _stored_axis(name, v, ndim)
        if hasattr(v, "detach"):  # a torch tensor, without importing torch
            v = v.detach().cpu().numpy()
        if isinstance(v, bool):
            a = np.asarray(v, dtype=np.bool_)
        elif isinstance(v, int):
            a = np.asarray(v, dtype=np.int64)
        elif isinstance(v, float):
            a = np.asarray(v, dtype=np.float64)
        else:
            a = np.asarray(v)
        code = dtype_code(a.dtype)
        if code is None:
            raise FormatError(
                f"tensor {name!r}: metadata {k!r} has dtype {a.dtype}, not one of the storable types "
                f"({', '.join(dt.name for dt in DTYPE_CODES.values())})"
            )
        if a.ndim > MAX_NDIM:
            raise FormatError(f"tensor {name!r}: metadata {k!r} has too many dimensions")
        out[str(k)] = np.array(a, dtype=DTYPE_CODES[code], order="C")  # keeps 0-d arrays 0-d
    return out


def _as_values(name: str, t: Any) -> np.ndarray:
    if hasattr(t, "detach"):  # a torch tensor, without importing torch
        t = t.detach().cpu().numpy()
    a = np.asarray(t)
    if a.dtype.kind not in "iu" or dtype_code(a.dtype) not in TENSOR_DTYPE_CODES:
        raise FormatError(
            f"tensor {name!r} has dtype {a.dtype}; only integer tensors can be coded "
            "(quantize floats first, e.g. with quant.arrays.quantize_array)"
        )
    if a.ndim > MAX_NDIM:
        raise FormatError(f"cannot store: tensor {name!r}: {a.ndim} dimensions (at most {MAX_NDIM})")
    if not a.dtype.isnative:  # the codec works on native integers; the file stores the values, not the bytes
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def _axes(channel_axis: int | Mapping[str, int | None] | None, arrays: Mapping[str, np.ndarray]) -> dict[str, int | None]:
    """The channel axis of each tensor: an int applies to every tensor it fits (others get none); a mapping
    names tensors (each axis must fit)."""
    from entropy.layout.channels import normalize_axis

    out: dict[str, int | None] = {}
    if channel_axis is None:
        return {n: None for n in arrays}
    if isinstance(channel_axis, Mapping):
        unknown = set(channel_axis) - set(arrays)
        if unknown:
            raise FormatError(f"channel_axis given for unknown or pre-encoded tensors: {sorted(unknown)[:5]}")
        for n, a in arrays.items():
            ax = channel_axis.get(n)
            try:
                out[n] = None if ax is None else normalize_axis(ax, a.ndim, f"tensor {n!r}")
            except ValueError as exc:
                raise FormatError(str(exc)) from None
        return out
    for n, a in arrays.items():
        try:
            out[n] = normalize_axis(channel_axis, a.ndim, f"tensor {n!r}") if a.ndim else None
        except ValueError:
            if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
                raise FormatError(f"channel_axis must be an int, a mapping or None, got {channel_axis!r}") from None
            out[n] = None  # one int for every tensor: those without that axis are coded whole
    return out


def _shared_layouts(
    arrays: Mapping[str, np.ndarray], stored: Mapping[str, dict[str, np.ndarray]], opts: CodecOptions,
) -> dict[str, LayoutChoice]:
    """Single layouts of tensors of equal dtype and equal bit width (ceil(log2(range))) sharing one pooled code.

    The pool's alphabet is the union of the members' value ranges; its code is built from the summed symbol
    counts of plain values or pairs, whichever ``opts`` allows (both: the grouping with the fewer payload +
    codebook bits, per pool). Pools that cannot share (alphabet too large, or neither mode allowed) and empty
    tensors are coded on their own.
    """
    from entropy.codec import kernels  # numba; only needed here
    from entropy.codec.measures import payload_bits

    max_code_length, chunk_size = opts.max_code_length, opts.chunk_size
    pools: dict[tuple[str, int], list[str]] = {}
    out: dict[str, LayoutChoice] = {}
    spans: dict[str, tuple[int, int]] = {}
    for name, a in arrays.items():
        if a.size == 0:
            out[name] = single_layout(a, opts, name=name, arrays=stored[name])
            continue
        lo, hi = int(a.min()), int(a.max())
        spans[name] = (lo, hi)
        pools.setdefault((a.dtype.name, (hi - lo).bit_length()), []).append(name)
    for names in pools.values():
        lo = min(spans[n][0] for n in names)
        R = max(spans[n][1] for n in names) - lo + 1
        ks = [k for k, mode in ((1, "plain"), (2, "pairs")) if mode in opts.modes]
        ks = [k for k in ks if R**k <= MAX_ALPHABET and chunk_size % k == 0]
        if len(names) == 1 or not ks:
            for n in names:
                out[n] = single_layout(arrays[n], opts, name=n, arrays=stored[n])
            continue
        best = None
        for k in ks:
            counts = sum(
                kernels.count_symbols(np.ascontiguousarray(arrays[n]).reshape(-1), lo, R, k)[0] for n in names
            )
            cb = Codebook.from_counts(counts, max_length=max_code_length)
            bits = payload_bits(counts, cb.lengths) + cb.serialized_bits
            if best is None or bits < best[0]:
                best = (bits, k, cb)
        _, k, cb = best
        pooled = dataclasses.replace(opts, group=k)
        for n in names:
            try:
                prep = prepare_encode(arrays[n], pooled, codebook=cb, value_min=lo, value_range=R)
            except EntropyError as exc:
                raise type(exc)(f"tensor {n!r}: {exc}") from exc
            out[n] = single_layout(prep, name=n, arrays=stored[n])
    return out


def plan_file(
    tensors: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
    *,
    options: FileOptions | None = None,
    quant: Mapping[str, Mapping[str, Any]] | None = None,
    **option_fields: Any,
) -> FilePlan:
    """Decide everything about a file (arguments of :func:`entropy.save`) and its exact size, writing nothing.

    The plan's ``file_bytes`` is the size of the file :func:`entropy.write_plan` then writes, and its tensors'
    ``choice`` the layout each gets.

    >>> import numpy as np, entropy
    >>> w = (np.arange(1024) % 16 + 16 * (np.arange(1024) // 256)).astype(np.uint8).reshape(4, 256)
    >>> plan = entropy.plan_file({"w": w}, channel_axis=0)  # channel c holds the values 16c .. 16c + 15
    >>> plan.tensors[0].choice.layout, plan.file_bytes < entropy.plan_file({"w": w}).file_bytes
    ('channel', True)
    """
    opts = FileOptions.of(options, **option_fields)
    codec, channel_axis, layout = opts.codec, opts.channel_axis, opts.layout
    quant = dict(quant or {})
    unknown = set(quant) - set(tensors)
    if unknown:
        raise FormatError(f"quantization metadata given for unknown tensors: {sorted(unknown)}")
    meta = _as_metadata(metadata)
    stored = {name: metadata_arrays(name, quant.get(name), np.ndim(t) if not isinstance(t, EncodedTensor)
                                    else len(t.shape)) for name, t in tensors.items()}
    values: dict[str, np.ndarray] = {}
    choices: dict[str, LayoutChoice] = {}
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise FormatError(f"tensor names must be str, got {name!r}")
        if isinstance(t, EncodedTensor):
            choices[name] = single_layout(t, name=name, arrays=stored[name])
        else:
            values[name] = _as_values(name, t)
    axes = _axes(channel_axis, values)
    layouts = {n: (layout.get(n, "auto") if isinstance(layout, Mapping) else layout) for n in values}
    if isinstance(layout, Mapping) and set(layout) - set(values):
        raise FormatError(f"layout given for unknown or pre-encoded tensors: {sorted(set(layout) - set(values))[:5]}")
    if opts.share_codebooks:
        pooled = {n: a for n, a in values.items() if axes[n] is None and layouts[n] in ("auto", "single")}
        if len(pooled) > 1:
            choices.update(_shared_layouts(pooled, stored, codec))
    for name, a in values.items():
        if name in choices:
            continue
        if axes[name] is None and layouts[name] in ("auto", "single"):  # (the only layout: no search)
            choices[name] = single_layout(a, codec, name=name, arrays=stored[name])
            continue
        found = layout_choices(a, codec, name=name, axis=axes[name], arrays=stored[name], layout=layouts[name],
                               clusters=opts.clusters)
        choices[name] = best_layout(found)
    plans = []
    for name in tensors:  # the caller's order
        c = choices[name]
        src = values.get(name)
        shape = tuple(int(d) for d in (src.shape if src is not None else tensors[name].shape))
        dt = src.dtype if src is not None else np.dtype(tensors[name].dtype)
        code = dtype_code(dt)
        if code not in TENSOR_DTYPE_CODES:
            raise FormatError(f"tensor {name!r}: dtype {dt} cannot be stored")
        plans.append(TensorPlan(name, code, shape, c, stored[name], src))
    codebooks: list[bytes] = []
    ids: dict[bytes, int] = {}
    for p in plans:
        for s in p.choice.streams:
            b = s.codebook.to_bytes()
            if b not in ids:
                ids[b] = len(codebooks)
                codebooks.append(b)
    head = header_bytes(meta, codebooks, [p.choice.record_bytes for p in plans])
    data = sum(data_bytes(p.choice.index_bytes, p.choice.payload_bytes) for p in plans)
    return FilePlan(meta, codebooks, plans, head, head + data, opts)
