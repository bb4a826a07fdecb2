"""How a file is planned and written: :class:`FileOptions`, the one definition of those options and of their checks.

:func:`entropy.save`, :func:`entropy.plan_file` and :func:`entropy.write_plan` take a :class:`FileOptions`, or its
fields (and those of its :class:`~entropy.CodecOptions`) as keyword arguments; :meth:`FileOptions.of` is the one
place where keyword arguments become options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from entropy.codec.options import FIELDS as CODEC_FIELDS
from entropy.codec.options import CodecOptions, given_or_default
from entropy.errors import EntropyError, FormatError
from entropy.layout.search import CLUSTER_COUNTS, layout_request

__all__ = ["FileOptions"]


def _axis_ok(axis: object) -> bool:
    return axis is None or (isinstance(axis, (int, np.integer)) and not isinstance(axis, bool))


@dataclass(frozen=True)
class FileOptions:
    """How :func:`entropy.save` plans and writes a file; every field has the default ``save`` uses.

    ``codec``: how every stream is coded (:class:`~entropy.CodecOptions`: ``max_code_length``, ``chunk_size``,
    ``group``, ``mode``, ``escape``); symbol modes and escapes are chosen per stream of every layout by exact size
    among those it allows. ``group=2`` falls back to single values where pairs cannot apply.
    ``channel_axis``: None, an int (every tensor that has that axis; negative counts from the end) or a mapping
    name -> axis. A tensor with a channel axis gets the smallest of its layouts (one code; one per channel; one per
    group of channels with the same ``bits``; K clusters of similar channels, for K in ``clusters``), from exact
    sizes.
    ``layout``: one name for all tensors, or a mapping name -> name: ``auto`` (the smallest), ``single``,
    ``channel``, ``bitwidth``, ``cluster`` or ``clusterK``.
    ``clusters``: the cluster counts the search tries.
    ``share_codebooks``: code tensors without a channel axis with codebooks pooled over tensors of the same dtype
    and bit width (identical codebooks are always stored once).
    ``durable``: fsync the file and its folder (False: still atomic if the process dies, not across a power loss).
    ``verify``: decode the written file and compare it with the input before it replaces the target.
    ``durable`` and ``verify`` concern the writing (:func:`entropy.write_plan`); the rest, the plan.

    Invalid values raise EntropyError (FormatError for a channel axis, layout or cluster count) when the options
    are made.

    >>> opts = FileOptions(channel_axis=1, codec=CodecOptions(max_code_length=10))
    >>> opts.layout, opts.codec.chunk_size
    ('auto', 4096)
    >>> FileOptions.of(opts, chunk_size=1024, verify=True).codec
    CodecOptions(max_code_length=10, chunk_size=1024, group='auto', mode='auto', escape=True)
    """

    codec: CodecOptions = CodecOptions()
    channel_axis: int | Mapping[str, int | None] | None = None
    layout: str | Mapping[str, str] = "auto"
    clusters: tuple[int, ...] = CLUSTER_COUNTS
    share_codebooks: bool = False
    durable: bool = True
    verify: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # (frozen: the checked values replace the given ones)
        if not isinstance(self.codec, CodecOptions):
            raise EntropyError(f"codec must be CodecOptions, got {type(self.codec).__name__}")
        axis = self.channel_axis
        if isinstance(axis, Mapping):
            bad = [(k, v) for k, v in axis.items() if not isinstance(k, str) or not _axis_ok(v)]
            if bad:
                raise FormatError(f"channel_axis maps tensor names to an int or None, got {bad[0][0]!r}: "
                                   f"{bad[0][1]!r}")
            set_(self, "channel_axis", MappingProxyType(dict(axis)))
        elif not _axis_ok(axis):
            raise FormatError(f"channel_axis must be an int, a mapping or None, got {axis!r}")
        layout = self.layout
        if isinstance(layout, Mapping):
            for k, v in layout.items():
                if not isinstance(k, str):
                    raise EntropyError(f"layout maps tensor names to layout names, got key {k!r}")
                layout_request(v)
            set_(self, "layout", MappingProxyType(dict(layout)))
        else:
            layout_request(layout)
        try:
            clusters = tuple(self.clusters)
        except TypeError:
            raise EntropyError(f"clusters must be a sequence of cluster counts, got {self.clusters!r}") from None
        if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in clusters):
            raise FormatError(f"cluster counts must be integers of at least 1, got {self.clusters!r}")
        set_(self, "clusters", tuple(int(k) for k in clusters))
        for flag in ("share_codebooks", "durable", "verify"):
            set_(self, flag, bool(getattr(self, flag)))

    @classmethod
    def of(cls, options: FileOptions | None = None, /, **fields: object) -> FileOptions:
        """``options`` (default: the defaults) with the named ``fields`` replaced; the fields of
        :class:`~entropy.CodecOptions` (``max_code_length``, ...) replace those of ``options.codec``. How every
        file entry point turns its keyword arguments into options: raises TypeError for a name that is neither,
        EntropyError for a bad value."""
        options = given_or_default(options, _DEFAULT)
        if not fields:
            return options
        codec_fields = {k: fields.pop(k) for k in list(fields) if k in CODEC_FIELDS}
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}; the file's options are "
                            f"{', '.join(FIELDS + CODEC_FIELDS)}")
        if codec_fields:
            fields["codec"] = CodecOptions.of(fields.get("codec", options.codec), **codec_fields)
        return dataclasses.replace(options, **fields)


#: the names of the options (besides those of CodecOptions)
FIELDS = tuple(f.name for f in dataclasses.fields(FileOptions))
_DEFAULT = FileOptions()
