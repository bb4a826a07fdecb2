"""The codec: integer arrays <-> chunked canonical-Huffman bitstreams (the bottom layer of :mod:`entropy`).

:mod:`~entropy.codec.options` (how a stream is coded, :class:`CodecOptions`), :mod:`~entropy.codec.params` (a
stream's parameters, :class:`CodecParams`), :mod:`~entropy.codec.lengths` (code
lengths), :mod:`~entropy.codec.codebook` (canonical codes and their serialized form), :mod:`~entropy.codec.measures`
(entropies and payload sizes), :mod:`~entropy.codec.modes` (a stream's symbol mode, window, escapes and code, by
exact size), :mod:`~entropy.codec.streams` (encode and decode one array), :mod:`~entropy.codec.small_streams`
(memoized small streams), :mod:`~entropy.codec.threads` (parallel groups of chunks) and the numba kernels
(:mod:`~entropy.codec.kernels`, imported on first use).

Imports nothing from :mod:`entropy.format`, :mod:`entropy.layout` or :mod:`entropy.file`. The public names are
re-exported by :mod:`entropy`; this package's ``__init__`` imports nothing, so that importing one module loads
only what it needs.
"""
