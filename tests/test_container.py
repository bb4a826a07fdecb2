"""Round trips, random access, metadata, accounting and atomic writes of the .hqt container."""

from __future__ import annotations

import math
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest

import entropy as C
from entropy.file import iothread
from entropy.file.atomic import atomic_write
from entropy.codec.streams import decode, encode
from entropy.errors import FormatError, IntegrityError, MissingTensorError


def _tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv1.weight": rng.integers(0, 16, (16, 3, 3, 3)).astype(np.uint8),
        "conv2.weight": np.clip(np.round(rng.laplace(0, 2, (32, 16, 3, 3))), -8, 7).astype(np.int8),
        "fc.weight": rng.integers(-300, 300, (10, 64)).astype(np.int16),
        "acts": np.where(rng.random(9000) < 0.9, 0, rng.integers(0, 16, 9000)).astype(np.uint16),
        "wide": rng.integers(-(2**20), -(2**20) + 5000, 777).astype(np.int32),
        "big": rng.integers(10**12, 10**12 + 40, (3, 5, 7)).astype(np.int64),
        "u32": rng.integers(0, 300, 50).astype(np.uint32),
        "scalar": np.array(-3, dtype=np.int8),
        "empty": np.zeros((0,), np.uint8),
        "empty2d": np.zeros((4, 0, 3), np.int16),
        "constant": np.full((5, 5), 7, np.uint8),
        "ünïcødé name/with.dots": np.arange(10, dtype=np.uint8),
    }


def _assert_same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype, k
        assert got[k].shape == v.shape, k
        assert np.array_equal(got[k], v), k


@pytest.mark.parametrize("group", ["auto", 1, 2])
def test_round_trip_many_tensors_mixed_dtypes(tmp_path, group):
    t = _tensors()
    path = tmp_path / "m.hqt"
    fi = C.save(path, t, {"model": "toy", "method": "none"}, group=group, chunk_size=256)
    assert fi.file_bytes == os.path.getsize(path)
    _assert_same(C.load(path), t)
    assert [x.name for x in fi.tensors] == list(t)
    assert C.info(path).metadata["model"] == "toy"
    assert "tool" in C.info(path).metadata


def test_load_tensor_reads_only_that_tensor(tmp_path):
    t = _tensors()
    path = tmp_path / "r.hqt"
    C.save(path, t)
    # Damage the payload of one tensor: the others still decode; that one names itself.
    victim = C.info(path).tensor("acts")
    raw = bytearray(path.read_bytes())
    h = C.HQTFile(path)
    off = h._header.tensor("acts", str(path)).payload_offset
    h.close()
    raw[off + victim.payload_bytes // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    for name, want in t.items():
        if name == "acts":
            with pytest.raises(IntegrityError, match="acts"):
                C.load_tensor(path, name)
        else:
            assert np.array_equal(C.load_tensor(path, name), want)
    with pytest.raises(IntegrityError, match="acts"):
        C.load(path)


def test_encoded_tensor_payload_stored_verbatim_and_aligned(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 16, 20001).astype(np.uint8)
    enc = encode(x, chunk_size=1024)
    path = tmp_path / "e.hqt"
    C.save(path, {"x": enc, "y": x[:7]})
    raw = path.read_bytes()
    with C.HQTFile(path) as f:
        e = f._header.tensor("x", str(path))
        assert e.payload_offset % C.ALIGNMENT == 0 and e.index_offset % C.ALIGNMENT == 0
        assert raw[e.payload_offset : e.payload_offset + e.payload_length] == enc.payload
        assert raw[e.index_offset : e.index_offset + e.index_length] == enc.index_bytes()
        assert np.array_equal(f.read("x"), decode(enc))
    ti = C.info(path).tensor("x")
    assert ti.entropy_bits == enc.accounting.entropy_bits
    assert ti.avg_code_length == enc.accounting.avg_code_length
    assert ti.payload_bits == enc.accounting.payload_bits


def test_shared_codebooks(tmp_path):
    rng = np.random.default_rng(2)
    t = {f"layer{i}": np.clip(np.round(rng.laplace(0, 20, 600 + i)), -128, 127).astype(np.int8) for i in range(8)}
    t["odd"] = np.array([1, -2, 3], np.int8)
    p1, p2 = tmp_path / "own.hqt", tmp_path / "shared.hqt"
    own = C.save(p1, t, share_codebooks=False, group=1)
    shared = C.save(p2, t, share_codebooks=True, group=1)
    _assert_same(C.load(p2), t)
    # the layers (same dtype, same bit width) share one code; "odd" (3-bit span) has its own
    layer_ids = {x.codebook_id for x in shared.tensors if x.name.startswith("layer")}
    assert len(layer_ids) == 1 and shared.n_codebooks == 2 and own.n_codebooks == len(t)
    assert shared.codebook_bytes < own.codebook_bytes
    assert all(x.codebook_shared for x in shared.tensors if x.name.startswith("layer"))
    # the shared record is split over its users and adds up to what is stored
    assert math.isclose(sum(x.codebook_bytes for x in shared.tensors), shared.codebook_bytes)
    wide = dict(t, wide16=np.arange(-500, 500, dtype=np.int16), wide16b=np.arange(-400, 600, dtype=np.int16))
    for g in ("auto", 2):  # group 2 falls back to 1 where the alphabet is too wide
        p3 = tmp_path / f"shared{g}.hqt"
        C.save(p3, wide, share_codebooks=True, group=g)
        _assert_same(C.load(p3), wide)
        assert C.info(p3).tensor("wide16").group == 1


def test_identical_codebooks_stored_once(tmp_path):
    x = np.tile(np.arange(16, dtype=np.uint8), 10)
    fi = C.save(tmp_path / "d.hqt", {"a": x, "b": x.copy(), "c": x[::-1].copy()}, group=1)
    assert fi.n_codebooks == 1


def test_accounting_adds_up(tmp_path):
    t = _tensors(3)
    fi = C.save(tmp_path / "a.hqt", t)
    per_tensor = sum(x.total_bytes for x in fi.tensors)
    fixed = C.PREAMBLE_SIZE + fi.file_metadata_bytes + 8  # + codebook and tensor counts
    header_pad = fi.header_bytes - fixed - fi.codebook_bytes - fi.tensor_table_bytes
    assert 0 <= header_pad < C.ALIGNMENT
    assert math.isclose(per_tensor + fixed + header_pad, fi.file_bytes)
    assert fi.file_bytes == fi.header_bytes + fi.index_bytes + fi.payload_bytes + fi.padding_bytes
    for x in fi.tensors:
        if x.n_values:
            assert math.isclose(x.coded_bits_per_value, 8 * x.total_bytes / x.n_values)
            if all(st.mode == "plain" for st in x.streams):  # pairs and run symbols can go below order-0 entropy
                assert x.avg_code_length >= x.entropy_bits - 1e-9
    assert fi.tensor("fc.weight").nominal_bits == math.ceil(math.log2(int(t["fc.weight"].max()) - int(t["fc.weight"].min()) + 1))


def test_quant_metadata_and_dequantize(tmp_path):
    rng = np.random.default_rng(4)
    q = rng.integers(0, 16, (3, 8, 5)).astype(np.uint8)
    scale = rng.uniform(0.01, 0.2, 8).astype(np.float32)
    zp = rng.integers(0, 16, 8).astype(np.int64)
    bits = np.array([4, 4, 3, 4, 2, 4, 4, 4], np.float64)
    meta = {"scale": scale, "zero_point": zp, "bits": bits, "levels": (2**bits).astype(np.int64), "axis": 1,
            "custom_f16": np.ones((2, 2), np.float16), "flag": True, "nothing": None}
    path = tmp_path / "q.hqt"
    C.save(path, {"w": q, "s": q[0, 0].copy()}, quant={"w": meta, "s": {"scale": 0.5, "zero_point": 3}})
    got = C.load_quant(path, "w")
    assert set(got) == {"scale", "zero_point", "bits", "levels", "axis", "custom_f16", "flag"}
    assert got["axis"] == 1 and isinstance(got["axis"], int)
    assert got["flag"] is True
    np.testing.assert_array_equal(got["scale"], scale)
    assert got["custom_f16"].dtype == np.float16 and got["custom_f16"].shape == (2, 2)
    want = (q.astype(np.int64) - zp[None, :, None]).astype(np.float32) * scale[None, :, None]
    out = C.dequantize(path, "w")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(C.dequantize(path, "s"), (q[0, 0].astype(np.float32) - 3) * np.float32(0.5))
    ti = C.info(path).tensor("w")
    assert ti.nominal_bits == pytest.approx(bits.mean())
    assert C.load_quant(path, "s") == {"scale": 0.5, "zero_point": 3}


def test_dequantize_without_scale_is_an_error(tmp_path):
    C.save(tmp_path / "n.hqt", {"x": np.arange(4, dtype=np.uint8)})
    with pytest.raises(FormatError, match="scale"):
        C.dequantize(tmp_path / "n.hqt", "x")


def test_bad_inputs(tmp_path):
    with pytest.raises(FormatError, match="float"):
        C.save(tmp_path / "f.hqt", {"x": np.zeros(3, np.float32)})
    with pytest.raises(FormatError, match="unknown tensors"):
        C.save(tmp_path / "f.hqt", {"x": np.zeros(3, np.uint8)}, quant={"y": {"scale": 1.0}})
    with pytest.raises(FormatError, match="storable"):
        C.save(tmp_path / "f.hqt", {"x": np.zeros(3, np.uint8)}, quant={"x": {"s": np.array(["a"])}})
    assert not (tmp_path / "f.hqt").exists()
    C.save(tmp_path / "ok.hqt", {"x": np.zeros(3, np.uint8)})
    with pytest.raises(MissingTensorError, match="nope"):
        C.load_tensor(tmp_path / "ok.hqt", "nope")


def _patch(path, offset: int, fmt: str, value) -> None:
    """Overwrite a header field and re-seal the header CRC (a well-formed but hostile file)."""
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    hlen = struct.unpack_from("<I", raw, 12)[0]
    crc = zlib.crc32(bytes(raw[32 : 32 + hlen]), zlib.crc32(bytes(raw[:28])))
    struct.pack_into("<I", raw, 28, crc)
    path.write_bytes(bytes(raw))


def test_unknown_version_flags_and_types(tmp_path):
    p = tmp_path / "v.hqt"
    C.save(p, {"t": np.arange(5, dtype=np.uint8)}, quant={"t": {"scale": np.float32(1.0)}})
    good = p.read_bytes()
    _patch(p, 8, "<H", 3)
    with pytest.raises(FormatError, match="version 3"):
        C.load(p)
    p.write_bytes(good)
    _patch(p, 10, "<H", 1)
    with pytest.raises(FormatError, match="flags"):
        C.info(p)
    # the metadata array's type code is the byte after its name "scale"
    p.write_bytes(good)
    pos = good.index(b"scale") + len(b"scale")
    _patch(p, pos, "<B", 99)
    with pytest.raises(FormatError, match="unknown type code 99"):
        C.info(p)
    p.write_bytes(b"not an hqt file at all, but long enough to have a preamble")
    with pytest.raises(FormatError, match="magic"):
        C.load(p)


def test_hostile_shape_is_rejected_before_allocation(tmp_path):
    p = tmp_path / "h.hqt"
    C.save(p, {"HOSTILE": np.arange(5, dtype=np.uint8)})
    raw = p.read_bytes()
    dims_at = raw.index(b"HOSTILE", 32) + 7 + 4  # name, then the 4-byte record head, then dims
    assert struct.unpack_from("<Q", raw, dims_at)[0] == 5
    _patch(p, dims_at, "<Q", 10**12)
    with pytest.raises(FormatError, match="payload bits cannot hold"):
        C.info(p)


def test_atomic_write_keeps_old_file_on_exception(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(p) as fh:
            fh.write(b"new half")
            raise RuntimeError("boom")
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


_KILL_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    import entropy as C
    from entropy.codec.streams import encode
    rng = np.random.default_rng(0)
    enc = encode(rng.integers(0, 256, 2_000_000).astype(np.uint8), group=1)
    tensors = {f"t{i}": enc for i in range(int(sys.argv[2]))}
    print("ready", flush=True)
    while True:
        C.save(sys.argv[1], tensors)
    """
)


def test_killed_writer_leaves_old_or_complete_file(tmp_path):
    target = tmp_path / "big.hqt"
    old = {"old": np.arange(100, dtype=np.uint8)}
    C.save(target, old)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-c", _KILL_WRITER, str(target), "40"], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 60
        # wait until a temporary file is being written, then kill mid-write
        while time.monotonic() < deadline:
            tmps = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
            if tmps and os.path.getsize(tmp_path / tmps[0]) > 1_000_000:
                break
            time.sleep(0.002)
        else:
            pytest.fail("writer never started a temporary file")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the target is the old file or a complete new one: never partial
    names = C.HQTFile(target).names
    if names == ["old"]:
        assert np.array_equal(C.load_tensor(target, "old"), old["old"])
    else:
        assert names == [f"t{i}" for i in range(40)]
        C.load_tensor(target, "t39")


def _child_load(path, q):
    q.put(int(C.load_tensor(path, "x").sum()))


def test_reader_works_in_a_forked_child(tmp_path):
    """The CRC helper thread does not survive fork; the child must get a fresh one, not hang."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    x = np.random.default_rng(0).integers(0, 256, 3_000_000).astype(np.uint8)  # payload > 1 MiB
    path = tmp_path / "fork.hqt"
    C.save(path, {"x": x}, group=1)
    assert np.array_equal(C.load_tensor(path, "x"), x)  # starts the helper thread here
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_load, args=(str(path), q))
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        pytest.fail("reader hung in a forked child")
    assert q.get(timeout=5) == int(x.sum())


@pytest.mark.parametrize("durable", [True, False])
def test_streamed_payloads_match_buffered_write(tmp_path, monkeypatch, durable):
    # payloads of 1 MiB or more are written piece by piece while they are coded; the file must be byte for byte
    # the one a plain buffered write gives, and decode exactly
    rng = np.random.default_rng(5)
    big = np.clip(np.round(rng.laplace(0, 2.0, size=(3, 1_100_000))), -8, 7).astype(np.int8)  # ~3 pieces
    small = rng.integers(0, 16, size=(64, 64)).astype(np.uint8)
    tensors = {"big": big, "small": small, "big2": big[::-1].copy()}
    streamed = tmp_path / "streamed.hqt"
    info = C.save(streamed, tensors, quant={"big": {"scale": np.float32(0.5)}}, durable=durable)
    assert min(t.payload_bytes for t in info.tensors if t.name.startswith("big")) >= iothread.PARALLEL_CRC_BYTES
    monkeypatch.setattr(iothread, "PARALLEL_CRC_BYTES", 1 << 40)  # nothing streamed
    plain = tmp_path / "plain.hqt"
    C.save(plain, tensors, quant={"big": {"scale": np.float32(0.5)}}, durable=durable)
    assert streamed.read_bytes() == plain.read_bytes()
    back = C.load(streamed)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)
    enc = encode(big)
    with C.HQTFile(streamed) as f:
        e = f._header.tensor("big", str(streamed))
        region = f._region(e.payload_offset, e.payload_length)
        assert bytes(region) == enc.payload
        region.release()
