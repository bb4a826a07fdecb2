"""The layout search: how a tensor is split into coded streams, from exact closed-form sizes.

:mod:`~entropy.layout.channels` (channel rows of a tensor), :mod:`~entropy.layout.channel_counts` (per-channel
histograms, counted once per tensor), :mod:`~entropy.layout.row_sets` (the best stream of a set of rows, clusters
of similar rows) and :mod:`~entropy.layout.search` (the candidate layouts, their sizes and the choice).

Builds on :mod:`entropy.codec` (each stream's mode and code) and :mod:`entropy.format` (the bytes a layout costs
in a file); imports nothing from :mod:`entropy.file`. The public names are re-exported by :mod:`entropy`.
"""
