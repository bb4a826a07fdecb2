"""Codec benchmark: huffquant against bitarray, zstd (Huff0 literals, level 19) and memcpy.

Datasets (fixed seeds, ``numpy.random.default_rng(0)``; ACIQ clipping values from Banner
et al. 2019, as in ``shared/research/entropy-anchors.md``):

* ``lap4``: Laplace(0, 1) clipped at +-5.03, quantized to 16 levels (uint8 0..15);
* ``relu4``: ReLU of N(0, 1) clipped at 2.55, 16 levels (about 53% zeros);
* ``lap8``: Laplace(0, 1) clipped at +-9.89, 256 levels (uint8 0..255);
* ``relu4-sparse``: ReLU of N(-1.28, 1) clipped at 2.55, 16 levels (about 91% zeros);
* ``wide-int16``: Laplace(0, 300) rounded to int16 (thousands of distinct values: more than a 12-bit code holds);
* ``wide-uint16``: uniform uint16 (all 65536 values).

Rows: ``dataset, method, threads, bits_per_value, entropy, encode_MBps, decode_MBps, lossless``.
Speeds are million values per second (= MB/s for the 1-byte values, half the MB/s of the 2-byte
``wide`` values), wall clock, the minimum over ``repeats`` runs. Every method runs on one thread; huffquant
also on ``threads`` threads (default: all cores), its single- and multi-thread runs interleaved so that both
see the same machine load. bitarray codes bytes, so it runs on the 1-byte datasets only. Encode time includes the
histogram and code construction, decode time building the decoder and producing the
numpy array. Bits per value include everything needed to decode: the codebook and chunk
index for huffquant, the code table (8 bits per present symbol) for bitarray, the whole
frame for zstd. ``lossless`` is a real comparison of the decoded array with the input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import numpy as np

from entropy import available_cores, code_lengths, counts_of, decode, encode, shannon_entropy

__all__ = [
    "DATASETS",
    "METHODS",
    "make_datasets",
    "methods_for",
    "codec_rows",
    "reference_bits",
    "time_min",
    "time_interleaved",
    "thread_counts",
]

log = logging.getLogger(__name__)

DATASETS = ("lap4", "relu4", "lap8", "relu4-sparse", "wide-int16", "wide-uint16")
METHODS = ("huffquant", "bitarray", "zstd-huff0", "zstd-19-packed", "memcpy")

# ACIQ clipping thresholds (Banner et al. 2019): Laplace b=1 at 4 and 8 bits, Gaussian at 4 bits.
_ALPHA_LAP4 = 5.03
_ALPHA_LAP8 = 9.89
_ALPHA_GAUSS4 = 2.55


def _quantize_symmetric(x: np.ndarray, alpha: float, levels: int) -> np.ndarray:
    return np.round((np.clip(x, -alpha, alpha) + alpha) / (2 * alpha) * (levels - 1)).astype(np.uint8)


def _quantize_relu(x: np.ndarray, alpha: float, levels: int) -> np.ndarray:
    return np.round(np.clip(np.maximum(x, 0.0), 0.0, alpha) / alpha * (levels - 1)).astype(np.uint8)


def make_datasets(size: int) -> dict[str, np.ndarray]:
    """The benchmark datasets of ``size`` values each (fixed seeds): four of uint8, two ``wide`` of 16 bits."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return {
        "lap4": _quantize_symmetric(np.random.default_rng(0).laplace(0.0, 1.0, size), _ALPHA_LAP4, 16),
        "relu4": _quantize_relu(np.random.default_rng(0).normal(0.0, 1.0, size), _ALPHA_GAUSS4, 16),
        "lap8": _quantize_symmetric(np.random.default_rng(0).laplace(0.0, 1.0, size), _ALPHA_LAP8, 256),
        "relu4-sparse": _quantize_relu(np.random.default_rng(0).normal(-1.28, 1.0, size), _ALPHA_GAUSS4, 16),
        "wide-int16": np.clip(np.round(np.random.default_rng(0).laplace(0.0, 300.0, size)), -32768, 32767)
        .astype(np.int16),
        "wide-uint16": np.random.default_rng(0).integers(0, 1 << 16, size).astype(np.uint16),
    }


def methods_for(x: np.ndarray, methods: tuple[str, ...] = METHODS) -> tuple[str, ...]:
    """The methods that run on ``x``: bitarray codes bytes, so only 1-byte data."""
    return tuple(m for m in methods if m != "bitarray" or x.dtype.itemsize == 1)


def time_min(fn: Callable[[], object], repeats: int, *, slow_s: float = 2.0) -> tuple[float, object]:
    """Minimum wall-clock seconds of ``fn()`` over ``repeats`` runs, and its last result.

    Stops repeating once one run took more than ``slow_s`` seconds (zstd -19 on 10 M values).
    """
    best = float("inf")
    out = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        if dt > slow_s:
            break
    return best, out


def time_interleaved(fns: Mapping[object, Callable[[], object]], repeats: int) -> dict[object, tuple[float, object]]:
    """Minimum wall-clock seconds of each function over ``repeats`` rounds, and its last result; each round runs
    every function once, in turn, so that all of them see the same machine load (for ratios between them)."""
    best = {k: float("inf") for k in fns}
    out: dict[object, object] = {}
    for _ in range(max(1, repeats)):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            out[k] = fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return {k: (best[k], out[k]) for k in fns}


def thread_counts(threads: int | None = None) -> tuple[int, ...]:
    """The thread counts huffquant is measured at: 1, and ``threads`` (default: all cores) when that is more."""
    n = available_cores() if threads is None else int(threads)
    return (1,) if n <= 1 else (1, n)


def reference_bits(values: np.ndarray) -> dict[str, float]:
    """Order-0 entropy and optimal unlimited Huffman payload, in bits per value."""
    v = np.asarray(values).ravel()
    lo = int(v.min())
    counts = counts_of(v, int(v.max()) - lo + 1, lo)
    lens = code_lengths(counts, None)
    return {
        "entropy": shannon_entropy(counts),
        "huffman": float(np.dot(counts, lens.astype(np.int64)) / v.size),
    }


def _row(dataset, method, bits, entropy, n, t_enc, t_dec, lossless, threads: int = 1) -> dict:
    return {
        "dataset": dataset,
        "method": method,
        "threads": int(threads),
        "bits_per_value": float(bits),
        "entropy": float(entropy),
        "encode_MBps": n / t_enc / 1e6 if t_enc > 0 else float("inf"),
        "decode_MBps": n / t_dec / 1e6 if t_dec > 0 else float("inf"),
        "lossless": bool(lossless),
    }


def _bench_huffquant(x: np.ndarray, repeats: int, threads: tuple[int, ...]) -> list[tuple]:
    """(threads, bits/value, encode s, decode s, lossless) per thread count; the counts' runs interleaved."""
    for t in threads:
        decode(encode(x, threads=t), threads=t)  # JIT warm-up (compile or load from cache) outside the timing
    encs = time_interleaved({t: (lambda t=t: encode(x, threads=t)) for t in threads}, repeats)
    decs = time_interleaved({t: (lambda t=t: decode(encs[t][1], threads=t)) for t in threads}, repeats)
    out = []
    for t in threads:
        (t_enc, enc), (t_dec, y) = encs[t], decs[t]
        same = enc.payload == encs[1][1].payload  # any thread count writes the same bytes
        out.append((t, enc.accounting.bits_per_value, t_enc, t_dec, bool(same and np.array_equal(x, y))))
    return out


def _bench_bitarray(x: np.ndarray, repeats: int) -> tuple[float, float, float, bool]:
    from bitarray import bitarray, decodetree
    from bitarray.util import huffman_code

    data = x.tobytes()  # iterating bytes yields ints, the code's symbols

    def enc():
        counts = np.bincount(x, minlength=256)
        code = huffman_code({int(s): int(c) for s, c in enumerate(counts) if c})
        a = bitarray(endian="big")
        a.encode(code, data)
        return a, code

    t_enc, (a, code) = time_min(enc, repeats)

    def dec():
        tree = decodetree(code)
        return np.fromiter(a.decode(tree), dtype=x.dtype, count=x.size)

    t_dec, y = time_min(dec, repeats)
    bits = len(a) + 8 * len(code)
    return bits / x.size, t_enc, t_dec, bool(np.array_equal(x, y))


def _zstd_huff0_params():
    import zstandard

    return zstandard.ZstdCompressionParameters(
        strategy=zstandard.STRATEGY_FAST,
        min_match=7,
        hash_log=6,
        chain_log=6,
        search_log=1,
        window_log=17,
        target_length=0,
    )


def _bench_zstd_huff0(x: np.ndarray, repeats: int) -> tuple[float, float, float, bool]:
    import zstandard

    cctx = zstandard.ZstdCompressor(compression_params=_zstd_huff0_params())
    dctx = zstandard.ZstdDecompressor()
    raw = x.tobytes()
    t_enc, frame = time_min(lambda: cctx.compress(raw), repeats)
    t_dec, y = time_min(lambda: np.frombuffer(dctx.decompress(frame), dtype=x.dtype), repeats)
    return 8 * len(frame) / x.size, t_enc, t_dec, bool(np.array_equal(x, y))


def _bench_zstd19_packed(x: np.ndarray, repeats: int) -> tuple[float, float, float, bool]:
    import zstandard

    cctx = zstandard.ZstdCompressor(level=19)
    dctx = zstandard.ZstdDecompressor()
    nibbles = x.dtype == np.uint8 and x.size and int(x.max()) < 16
    n = x.size

    def enc():
        if nibbles:
            v = x if n % 2 == 0 else np.concatenate((x, np.zeros(1, dtype=np.uint8)))
            packed = (v[0::2] << 4) | v[1::2]
            return cctx.compress(packed.tobytes())
        return cctx.compress(x.tobytes())

    t_enc, frame = time_min(enc, repeats)

    def dec():
        b = np.frombuffer(dctx.decompress(frame), dtype=np.uint8)
        if nibbles:
            out = np.empty(2 * b.size, dtype=np.uint8)
            out[0::2] = b >> 4
            out[1::2] = b & 15
            return out[:n]
        return b.view(x.dtype)

    t_dec, y = time_min(dec, repeats)
    return 8 * len(frame) / n, t_enc, t_dec, bool(np.array_equal(x, y))


def _bench_memcpy(x: np.ndarray, repeats: int) -> tuple[float, float, float, bool]:
    t, y = time_min(lambda: np.copy(x), max(repeats, 3))
    return 8.0 * x.itemsize, t, t, bool(np.array_equal(x, y))


_RUNNERS = {
    "bitarray": _bench_bitarray,
    "zstd-huff0": _bench_zstd_huff0,
    "zstd-19-packed": _bench_zstd19_packed,
    "memcpy": _bench_memcpy,
}


def codec_rows(
    datasets: Mapping[str, np.ndarray],
    repeats: int,
    *,
    methods: tuple[str, ...] = METHODS,
    progress: bool = False,
    threads: int | None = None,
) -> list[dict]:
    """Benchmark every method on every dataset; one row per (dataset, method, thread count): huffquant on one
    thread and on ``threads`` (default: all cores, when more than one), the others on one."""
    counts = thread_counts(threads)
    jobs = [(d, m) for d in datasets for m in methods_for(datasets[d], methods)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="codec bench", unit="run", leave=False)
    rows = []
    entropies = {name: reference_bits(x)["entropy"] for name, x in datasets.items()}
    for dataset, method in jobs:
        x = np.ascontiguousarray(datasets[dataset])
        if bar is not None:
            bar.set_postfix_str(f"{dataset} {method}")
        if method == "huffquant":
            runs = _bench_huffquant(x, repeats, counts)
        else:
            runs = [(1, *_RUNNERS[method](x, repeats))]
        for t, bits, t_enc, t_dec, ok in runs:
            rows.append(_row(dataset, method, bits, entropies[dataset], x.size, t_enc, t_dec, ok, t))
            log.debug("%s %s (%d threads): %.4f bits/value, enc %.3f s, dec %.3f s", dataset, method, t, bits,
                      t_enc, t_dec)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return rows
