"""analysis: bits-per-value reports, lossless verification, channel packing, plots and the CLI."""
