"""Lossless verification: does every tensor of an .hqt file decode bit-exact to the original?

``verify_file(path, against)`` compares each tensor of the .hqt file with the array of
the same name in the original (.npy/.npz/.pt/.safetensors), by dtype, shape and bytes,
and reports a SHA-256 of each decoded tensor (its C-order little-endian bytes). A
damaged tensor is reported as such (with the checksum error) and the others are still
checked. When the original is a single .npy and the file holds one tensor, the two are
compared whatever their names.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from analysis.tensor_io import read_tensors, suffix_of
from entropy import EntropyError, HQTFile

__all__ = ["TensorCheck", "VerifyReport", "array_sha256", "verify_file"]


def array_sha256(a: np.ndarray) -> str:
    """Hex SHA-256 of the array's values as C-order little-endian bytes (shape/dtype not included)."""
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return hashlib.sha256(a.reshape(-1).view(np.uint8)).hexdigest()


@dataclass(frozen=True)
class TensorCheck:
    """Outcome for one tensor name: status is one of ok, mismatch, missing, extra, damaged."""

    name: str
    status: str
    detail: str = ""
    sha256: str | None = None  # of the decoded tensor
    original_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class VerifyReport:
    path: str
    against: str
    checks: list[TensorCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[TensorCheck]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "against": self.against,
            "ok": self.ok,
            "tensors": [
                {"name": c.name, "status": c.status, "detail": c.detail, "sha256": c.sha256,
                 "original_sha256": c.original_sha256}
                for c in self.checks
            ],
        }


def _compare(name: str, got: np.ndarray, want: np.ndarray) -> TensorCheck:
    h = array_sha256(got)
    h0 = array_sha256(want)
    if got.dtype != want.dtype:
        return TensorCheck(name, "mismatch", f"dtype {got.dtype} in file, {want.dtype} in original", h, h0)
    if got.shape != want.shape:
        return TensorCheck(name, "mismatch", f"shape {got.shape} in file, {want.shape} in original", h, h0)
    if h != h0 or not np.array_equal(got, want):
        n_bad = int(np.count_nonzero(got != want))
        return TensorCheck(name, "mismatch", f"{n_bad} of {got.size} values differ", h, h0)
    return TensorCheck(name, "ok", "", h, h0)


def verify_file(
    path: str | os.PathLike[str], against: str | os.PathLike[str], *, max_decoded_bytes: int | None = None,
    threads: int | None = None,
) -> VerifyReport:
    """Decode every tensor of ``path`` and compare it bit-exact with ``against``.

    ``max_decoded_bytes``: refuse (FormatError) a tensor that would decode to more bytes than this.
    ``threads``: as for :func:`entropy.load`.

    A file whose header is unreadable raises the reader's :class:`EntropyError`; damage
    confined to one tensor's data is reported in that tensor's check.
    """
    original = read_tensors(against)
    p, a = os.fspath(path), os.fspath(against)
    checks: list[TensorCheck] = []
    with HQTFile(p, max_decoded_bytes=max_decoded_bytes) as f:
        names = f.names
        pairs: list[tuple[str, str]]
        if suffix_of(a) == ".npy" and len(names) == 1 and len(original) == 1:
            pairs = [(names[0], next(iter(original)))]
        else:
            pairs = [(n, n) for n in names if n in original]
            checks.extend(TensorCheck(n, "extra", "in the file, not in the original") for n in names if n not in original)
        matched = {o for _, o in pairs}
        checks.extend(
            TensorCheck(n, "missing", "in the original, not in the file") for n in original if n not in matched
        )
        for name, _ in pairs:  # a refused size is an error of the whole check, not a damaged tensor
            f.check_decoded_bytes([name])
        for name, oname in pairs:
            try:
                got = f.read(name, threads=threads)
            except EntropyError as exc:
                checks.append(TensorCheck(name, "damaged", f"{type(exc).__name__}: {exc}",
                                          None, array_sha256(original[oname])))
                continue
            checks.append(_compare(name, got, original[oname]))
    order = {n: i for i, n in enumerate(names)}
    checks.sort(key=lambda c: order.get(c.name, len(order)))
    return VerifyReport(p, a, checks)
