"""The fuzzer's seed corpus: small .hqt files written by the project's own writer, one per layout, symbol mode and
header feature, plus the version-1 reference files of the test suite.

The seeds are made at run time (a few seconds) rather than committed: they follow the writer, so when the format
gains a feature that ``save`` uses by itself (a new symbol mode picked by size, say), the corpus covers it without
anyone regenerating binary files. Every seed is below 16 KiB, so that each fuzzing run is cheap.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

V1_FILES = Path(__file__).resolve().parent.parent / "tests" / "data" / "v1"
MAX_SEED_BYTES = 16384


def _laplace(rng: np.random.Generator, shape, scale: float, lo: int, hi: int, dtype) -> np.ndarray:
    return np.clip(np.round(rng.laplace(0, scale, shape)), lo, hi).astype(dtype)


def _channels(rng: np.random.Generator, shape, axis: int, levels: int) -> np.ndarray:
    """Non-negative activations whose channels have different spreads (so every layout has something to do)."""
    C = shape[axis]
    spread = rng.uniform(0.2, 3.0, C).reshape([C if i == axis else 1 for i in range(len(shape))])
    return np.clip(np.round(np.maximum(rng.laplace(-0.3, 1.0, shape), 0) * spread), 0, levels - 1)


def _cases(rng: np.random.Generator) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (tensors, keyword arguments of ``entropy.save``)."""
    import entropy

    acts = _channels(rng, (2, 6, 5, 7), 1, 16).astype(np.uint8)  # odd rows: pairs straddle rows
    w = (_channels(rng, (5, 3, 3, 3), 0, 8) - 3).astype(np.int8)
    sparse = np.where(rng.random((6, 90)) < 0.1, rng.integers(1, 16, (6, 90)), 0).astype(np.uint8)
    wide = _laplace(rng, 400, 3e4, -(2**31), 2**31 - 1, np.int32)
    wide[::40] = rng.integers(-(2**31), 2**31 - 1, wide[::40].size)
    mixed = np.where(rng.random(800) < 0.7, 3, rng.integers(-500, 500, 800)).astype(np.int16)
    runs_esc_rows = entropy.encode(mixed, params=entropy.CodecParams(
        group=1, max_code_length=12, chunk_size=64, value_min=-20, value_range=40, runs=16, run_symbol=23,
        escape_min=-500, escape_range=1000, row_length=100))
    pairs_rows = entropy.encode(rng.integers(0, 6, 63).astype(np.int8), mode="pairs", chunk_size=4, row_length=7)
    long_codes = entropy.Codebook.from_lengths(np.array(list(range(1, 17)) + [16]))  # lengths up to 16: mode 5
    deep = rng.choice(17, 300, p=np.array([2.0 ** -min(i + 1, 16) for i in range(17)]) /
                      sum(2.0 ** -min(i + 1, 16) for i in range(17))).astype(np.uint8)
    deep[:17] = np.arange(17)
    deep_coded = entropy.encode(deep, params=entropy.CodecParams(group=1, max_code_length=16, chunk_size=64,
                                                                 value_min=0, value_range=17), codebook=long_codes)
    bits = np.array([2, 4, 2, 3, 4, 3], np.uint8)
    coded = ("plain", "pairs", "runs")  # where a seed is about a code, pinned to one (stored is often smaller)
    mix = np.concatenate([_laplace(rng, (3, 120), 2, 0, 63, np.int64) + 20, rng.integers(0, 64, (3, 120))])
    stored_rows = entropy.encode(rng.integers(-300, 700, 400).astype(np.int16), params=entropy.CodecParams(
        group=1, max_code_length=12, chunk_size=16, value_min=-300, value_range=1000, row_length=50, stored=True))
    return {
        "plain": ({"w4": rng.integers(0, 16, 301).astype(np.uint8)}, {"group": 1, "chunk_size": 64}),
        "pairs": ({"p": rng.integers(0, 4, 301).astype(np.uint16)}, {"group": 2, "chunk_size": 10}),
        "runs": ({"sparse": entropy.encode(sparse, mode="runs", chunk_size=128),
                  "runs_rows": entropy.encode(sparse.reshape(-1), mode="runs", chunk_size=32, row_length=90)}, {}),
        "escapes": ({"wide": wide}, {"chunk_size": 128, "mode": coded}),
        "runs_escapes_rows": ({"r": runs_esc_rows}, {}),
        "pairs_rows": ({"pr": pairs_rows}, {}),
        "long_codes_mode5": ({"deep": deep_coded}, {}),
        "sparse_alphabet_mode5": ({"x": np.array([0, 100] * 20, np.uint8)}, {"group": 1}),
        "index_4_bytes": ({"x": _laplace(rng, 3000, 3, -20, 20, np.int8)},
                          {"chunk_size": 3000, "max_code_length": 24, "group": 1}),
        "incompressible": ({"u16": rng.integers(0, 65536, 1500).astype(np.uint16)}, {}),  # a stored stream
        "stored": ({"ch": mix.astype(np.uint8), "rows": stored_rows,
                    "w32": rng.integers(-(2**31), 2**31, 200, dtype=np.int64).astype(np.int32)},
                   {"channel_axis": {"ch": 0}, "layout": {"ch": "channel"}, "chunk_size": 32}),
        "every_dtype": ({dt: _laplace(rng, 40, 4, -50, 50, np.int64).astype(dt) + (60 if dt[0] == "u" else 0)
                         for dt in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64")},
                        {"mode": coded}),
        "scalars_and_empty": ({"s": np.array(-2, np.int8), "one": np.array([7], np.int64), "same": np.full(30, 5,
                               np.int16), "e": np.zeros(0, np.int32), "e2": np.zeros((2, 0, 3), np.uint8)},
                              {"channel_axis": {"e2": 1}}),
        "layouts": ({"single": acts, "channel": w, "bitwidth": acts.copy(), "cluster": acts.copy(),
                     "cluster3": acts.copy()},
                    {"channel_axis": {"single": 1, "channel": 0, "bitwidth": 1, "cluster": 1, "cluster3": 1},
                     "layout": {"single": "single", "channel": "channel", "bitwidth": "bitwidth", "cluster": "cluster2",
                                "cluster3": "cluster3"},
                     "quant": {"bitwidth": {"bits": bits}}, "chunk_size": 16, "mode": coded}),
        "channel_axis_last": ({"a": _channels(rng, (3, 4, 10), 2, 30).astype(np.int16)},
                              {"channel_axis": 2, "layout": "cluster2", "chunk_size": 8, "mode": coded}),
        "quant_metadata": ({"w": w.copy(), "t": acts[0, 0].copy()},
                           {"quant": {"w": {"scale": rng.uniform(0.1, 1, 5).astype(np.float32), "zero_point":
                                            np.array([3], np.uint8), "bits": np.float32(2.5), "axis": 0,
                                            "flags": np.array([True, False]), "h": np.float16([1.5, -2]),
                                            "u64": np.array([2**63], np.uint64), "f64": -0.25},
                                      "t": {"scale": 0.5, "qmin": -3, "qmax": 12}},
                            "channel_axis": {"w": 0}}),
        "shared_codebooks": ({f"t{i}": rng.integers(0, 8, 50).astype(np.uint8) for i in range(4)},
                             {"share_codebooks": True}),
        "names_and_metadata": ({"é/ü 😀": rng.integers(-3, 3, 20).astype(np.int8), "": np.array([1, 2], np.uint8)},
                               {"metadata": {"model": "μ-net", "method": "", "source": "x" * 40}}),
    }


def seed_files(seed: int = 0) -> dict[str, bytes]:
    """Every seed file's bytes, by name (``<case>.hqt``, ``v1_<name>.hqt``); each below :data:`MAX_SEED_BYTES`."""
    import entropy

    rng = np.random.default_rng(seed)
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as d:
        for name, (tensors, kw) in _cases(rng).items():
            p = Path(d) / f"{name}.hqt"
            kw = dict(kw)
            metadata = kw.pop("metadata", {"model": "fuzz-seed"})
            entropy.save(p, tensors, metadata, durable=False, **kw)
            out[p.name] = p.read_bytes()
    for p in sorted(V1_FILES.glob("*.hqt")):
        out[f"v1_{p.name}"] = p.read_bytes()
    too_big = {k: len(v) for k, v in out.items() if len(v) > MAX_SEED_BYTES}
    if too_big:
        raise RuntimeError(f"seed files above {MAX_SEED_BYTES} bytes: {too_big}")
    return out


def write_seeds(directory: str | Path, make: Callable[[], dict[str, bytes]] = seed_files) -> list[Path]:
    """Write the seed files into ``directory`` (created; files of the same name replaced); returns their paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in make().items():
        p = d / name
        p.write_bytes(data)
        paths.append(p)
    return paths
