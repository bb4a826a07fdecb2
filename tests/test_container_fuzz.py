"""Fuzzing the .hqt reader: random and mutated files give nothing but EntropyError.

Mutated files are re-sealed (header CRC, and the CRC of a damaged index/payload region)
so the parser and the codec see well-formed-looking but hostile input. Every read runs
under tracemalloc: its peak allocation must stay within a bound proportional to the
file size (a 100-byte file must never make the reader allocate gigabytes).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import entropy as C
from entropy.format import align
from entropy.errors import EntropyError

# values (<= 8 bytes each) the payload can hold, plus codec temporaries and fixed costs
ALLOC_PER_FILE_BYTE = 4096
ALLOC_FIXED = 4 << 20


def _make_seed_files() -> list[bytes]:
    import tempfile
    from pathlib import Path

    rng = np.random.default_rng(11)
    files = []
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "seed.hqt"
        C.save(
            p,
            {"w": rng.integers(0, 16, (4, 10)).astype(np.uint8), "s": np.array(3, np.int32),
             "z": np.where(rng.random(70) < 0.7, 0, rng.integers(-3, 4, 70)).astype(np.int8)},
            {"model": "fuzz"},
            quant={"w": {"scale": np.arange(4, dtype=np.float32), "zero_point": 2, "axis": 0}},
            chunk_size=8,
        )
        files.append(p.read_bytes())
        C.save(p, {"pairs": rng.integers(0, 4, 33).astype(np.uint16)}, group=2, chunk_size=10)
        files.append(p.read_bytes())
        # version-2 layouts: clusters (stored map), one code per channel, per bit width (map from `bits`)
        acts = np.where(rng.random((2, 6, 5)) < 0.5, 0, rng.integers(0, 4, (2, 6, 5)) * rng.integers(1, 4, (1, 6, 1)))
        C.save(p, {"c": acts.astype(np.uint8)}, channel_axis=1, layout="cluster3", chunk_size=8)
        files.append(p.read_bytes())
        bits = np.array([2, 3, 2, 3, 3, 2], np.uint8)
        C.save(p, {"ch": acts.astype(np.int16), "bw": acts.astype(np.uint8)}, channel_axis={"ch": 1, "bw": 1},
               layout={"ch": "channel", "bw": "bitwidth"}, quant={"bw": {"bits": bits}}, chunk_size=6)
        files.append(p.read_bytes())
    files.append((Path(__file__).parent / "data" / "v1" / "mixed.hqt").read_bytes())  # version 1
    return files


SEEDS = _make_seed_files()


def _reseal(raw: bytearray, region_crc_positions: list[tuple[int, int, int]]) -> None:
    hlen = struct.unpack_from("<I", raw, 12)[0]
    if 32 + hlen > len(raw):
        return
    for crc_at, start, stop in region_crc_positions:
        if stop <= len(raw) and crc_at + 4 <= 32 + hlen:
            struct.pack_into("<I", raw, crc_at, zlib.crc32(bytes(raw[start:stop])))
    struct.pack_into("<I", raw, 28, zlib.crc32(bytes(raw[32 : 32 + hlen]), zlib.crc32(bytes(raw[:28]))))


def _crc_positions(raw: bytes) -> list[tuple[int, int, int]]:
    """(where the CRC field is in the header, region start, region end) for every index/payload."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.hqt"
        p.write_bytes(raw)
        with C.HQTFile(p) as f:
            tensors = f._header.tensors
            hlen = f._header.header_length
    out = []
    for t in tensors:
        for crc, start, stop in (
            (t.index_crc32, t.index_offset, t.payload_offset),
            (t.payload_crc32, t.payload_offset, align(t.payload_offset + t.payload_length)),
        ):
            at = raw.find(struct.pack("<I", crc), 32, 32 + hlen)
            if at >= 0:
                out.append((at, start, stop))
    return out


POSITIONS = [_crc_positions(s) for s in SEEDS]


@pytest.fixture(scope="module", autouse=True)
def _warm_up(tmp_path_factory):
    """Import and compile (or load) the codec kernels before any allocation is measured."""
    p = tmp_path_factory.mktemp("warm") / "w.hqt"
    for s in SEEDS:
        p.write_bytes(s)
        C.load(p)


def _read_all_parts(p) -> None:
    with C.HQTFile(p) as f:
        f.info()
        for name in f.names:
            f.quant(name)
            if "scale" in f.quant(name):
                f.dequantize(name)
            f.read(name)


def _read_everything(data: bytes, tmp_path, *, strict: bool = False) -> None:
    """Read every part of ``data``; EntropyError is an accepted outcome unless ``strict``."""
    p = tmp_path / "fuzz.hqt"
    p.write_bytes(data)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        if strict:
            _read_all_parts(p)
        else:
            try:
                _read_all_parts(p)
            except EntropyError:
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= ALLOC_FIXED + ALLOC_PER_FILE_BYTE * len(data), f"peak allocation {peak} bytes for a {len(data)}-byte file"


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_random_bytes(tmp_path, data, with_magic):
    if with_magic:
        data = C.MAGIC + struct.pack("<HHIQII", 1, 0, max(0, len(data) - 32) // 8 * 8, len(data) + 32, 0, 0) + data
    _read_everything(data, tmp_path)


@FUZZ
@given(
    st.integers(0, len(SEEDS) - 1),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
    st.booleans(),
)
def test_mutated_and_resealed_files(tmp_path, which, edits, reseal):
    raw = bytearray(SEEDS[which])
    for pos, value in edits:
        raw[pos % len(raw)] = value
    if reseal:
        _reseal(raw, POSITIONS[which])
    _read_everything(bytes(raw), tmp_path)


@FUZZ
@given(
    st.integers(0, len(SEEDS) - 1),
    st.integers(0, 10**6),
    st.sampled_from(["<Q", "<I", "<H", "<q"]),
    st.sampled_from([0, 1, 2, 7, 255, 2**16 - 1, 2**31, 2**32 - 1, 2**48, 2**62, 2**64 - 1]),
)
def test_hostile_header_fields(tmp_path, which, pos, fmt, value):
    """Big counts, lengths, dims and offsets written into the header, CRCs re-sealed."""
    raw = bytearray(SEEDS[which])
    hlen = struct.unpack_from("<I", raw, 12)[0]
    at = 32 + pos % max(1, hlen - struct.calcsize(fmt))
    size = struct.calcsize(fmt)
    value &= (1 << (8 * size)) - 1
    if fmt == "<q" and value >= 1 << 63:
        value -= 1 << 64
    struct.pack_into(fmt, raw, at, value)
    _reseal(raw, POSITIONS[which])
    _read_everything(bytes(raw), tmp_path)


def test_seeds_read_back(tmp_path):
    for s in SEEDS:
        _read_everything(s, tmp_path, strict=True)  # the unmodified files decode, dequantize included


def test_allocation_bound_is_not_vacuous(tmp_path):
    """The tracemalloc check does see numpy allocations."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        x = np.ones(10_000_000, np.uint8)
        _, peak = tracemalloc.get_traced_memory()
        del x
    finally:
        tracemalloc.stop()
    assert peak >= 10_000_000


_RLIMIT_CHILD = r'''
import random, resource, struct, sys, zlib
sys.path.insert(0, "tests")
import numpy as np
import test_container_fuzz as T
import entropy as C
from entropy.errors import EntropyError
from pathlib import Path

p = Path(sys.argv[1])
for s in T.SEEDS:  # warm up: compile/load the kernels before limiting memory
    p.write_bytes(s); C.load(p)
with open("/proc/self/status") as fh:
    vm = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmSize:"))
limit = vm + (256 << 20)  # 256 MiB of headroom; a hostile file asking for GBs hits MemoryError
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
rnd = random.Random(1234)
bad = []
for i in range(int(sys.argv[2])):
    w = rnd.randrange(len(T.SEEDS))
    raw = bytearray(T.SEEDS[w])
    hlen = struct.unpack_from("<I", raw, 12)[0]
    fmt = rnd.choice(["<Q", "<I", "<H", "<B"])
    at = 32 + rnd.randrange(hlen - struct.calcsize(fmt))
    value = rnd.choice([2**16 - 1, 2**31, 2**32 - 1, 2**40, 2**48, 2**62, 2**64 - 1, rnd.randrange(2**64)])
    struct.pack_into(fmt, raw, at, value & ((1 << (8 * struct.calcsize(fmt))) - 1))
    T._reseal(raw, T.POSITIONS[w])
    p.write_bytes(bytes(raw))
    try:
        with C.HQTFile(p) as f:
            f.info()
            f.read_all()
    except EntropyError:
        pass
    except BaseException as exc:
        bad.append(f"{i}: {type(exc).__name__}: {exc}")
print("BAD" if bad else "OK", len(bad))
print("\n".join(bad[:5]))
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux-specific")
def test_hostile_headers_under_an_address_space_limit(tmp_path):
    """Same idea as the tracemalloc bound, enforced by the kernel (also covers numba's allocator)."""
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    res = subprocess.run(
        [sys.executable, "-c", _RLIMIT_CHILD, str(tmp_path / "h.hqt"), "400"],
        capture_output=True, text=True, timeout=300, env=env, cwd=os.getcwd(),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("OK"), res.stdout
