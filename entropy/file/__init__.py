"""The ``.hqt`` file: planning, writing and reading whole files (the top layer of :mod:`entropy`).

:mod:`~entropy.file.options` (how a file is planned and written, :class:`FileOptions`), :mod:`~entropy.file.plan` (a
whole file's plan, exact size before writing), :mod:`~entropy.file.writer`,
:mod:`~entropy.file.atomic` (atomic replacement of a file), :mod:`~entropy.file.reader`,
:mod:`~entropy.file.header` (parsing a header; version-1 records in :mod:`~entropy.file.format_v1`),
:mod:`~entropy.file.info` (what a header says, byte accounting) and :mod:`~entropy.file.iothread` (the I/O
thread). The byte layout itself is :mod:`entropy.format`.

Builds on :mod:`entropy.layout`, :mod:`entropy.format` and :mod:`entropy.codec`. The public names are re-exported
by :mod:`entropy`.
"""
