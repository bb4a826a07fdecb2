"""Reader safety: linear-time tables, codebooks validated by every reader, a bound on decoded bytes, errors that
name the file and the tensor, and writer errors that name the user's path."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from analysis.cli import main
import entropy as C
from entropy.format import align
from entropy.codec.streams import encode
from entropy.errors import CodebookError, EntropyError, FormatError, StreamError


def _reseal_header(raw: bytearray) -> None:
    hlen = struct.unpack_from("<I", raw, 12)[0]
    struct.pack_into("<I", raw, 28, zlib.crc32(bytes(raw[32 : 32 + hlen]), zlib.crc32(bytes(raw[:28]))))


def _replace_in_header(raw: bytes, old: bytes, new: bytes) -> bytearray:
    """Replace the single occurrence of ``old`` in the header by ``new`` (same length) and re-seal the header."""
    assert len(old) == len(new)
    hlen = struct.unpack_from("<I", raw, 12)[0]
    at = raw.find(old, 32, 32 + hlen)
    assert at > 0 and raw.find(old, at + 1, 32 + hlen) < 0, "pattern must occur once in the header"
    out = bytearray(raw)
    out[at : at + len(old)] = new
    _reseal_header(out)
    return out


# --------------------------------------------------------------------------- many tensors


@pytest.mark.slow
def test_fifty_thousand_tensors_sharing_a_codebook_save_and_inspect(tmp_path, capsys):
    # The tensor table used to be summarised in time quadratic in the number of tensors sharing a codebook:
    # 50,000 tensors took about 380 s to save and as long to inspect. Linear, this takes seconds.
    enc = encode(np.array([0, 1], np.uint8))
    n = 50_000
    path = tmp_path / "many.hqt"
    fi = C.save(path, {f"t{i}": enc for i in range(n)}, durable=False)
    assert fi.n_codebooks == 1 and len(fi.tensors) == n
    back = C.info(path)
    assert len(back.tensors) == n and all(t.codebook_shared for t in back.tensors[:10])
    # the shared codebook record is split evenly over its (equal-sized) users
    assert back.tensors[0].codebook_bytes == pytest.approx(back.codebook_bytes / n)
    assert main(["inspect", str(path), "--json"]) == 0
    assert capsys.readouterr().out.count('"name": "t') == n
    assert np.array_equal(C.load_tensor(path, f"t{n - 1}"), [0, 1])


# --------------------------------------------------------------------------- codebooks checked by every reader


def _example(tmp_path):
    """A file whose only codebook is 3 symbols of lengths (2, 1, 2), stored as the 2 bytes 32 12."""
    path = tmp_path / "cb.hqt"
    x = np.array([[-1, 0, 0], [1, 0, -1]], np.int8)
    C.save(path, {"x": x}, group=1)
    assert b"\x02\x00\x00\x00\x32\x12" in path.read_bytes()
    return path


@pytest.mark.parametrize(
    "table,why",
    [
        (b"\x31\x12", "over-subscribed"),  # lengths 1, 1, 2: Kraft sum 1.25
        (b"\x32\x22", "incomplete"),  # lengths 2, 2, 2: Kraft sum 0.75
        (b"\x12\x22", "4 symbols"),  # lengths 2, 2, 2, (2): a 4-symbol code for a 3-value alphabet
    ],
)
def test_inspect_and_info_validate_codebooks_as_decode_does(tmp_path, capsys, table, why):
    path = _example(tmp_path)
    bad = tmp_path / "bad.hqt"
    bad.write_bytes(bytes(_replace_in_header(path.read_bytes(), b"\x02\x00\x00\x00\x32\x12", b"\x02\x00\x00\x00" + table)))
    for read in (C.info, C.load, lambda p: C.load_tensor(p, "x"), C.HQTFile):
        with pytest.raises(CodebookError, match=why):
            read(bad)
    capsys.readouterr()
    assert main(["inspect", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "CodebookError" in err and str(bad) in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- decoded size bound


def test_max_decoded_bytes_bounds_every_read(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 7, 1000).astype(np.uint16)  # 2000 bytes decoded
    b = rng.integers(0, 7, 300).astype(np.uint8)  # 300 bytes decoded
    path = tmp_path / "lim.hqt"
    C.save(path, {"a": a, "b": b}, quant={"b": {"scale": np.float32(0.5)}})
    assert np.array_equal(C.load_tensor(path, "a", max_decoded_bytes=2000), a)
    with pytest.raises(FormatError, match=r"tensor 'a'.*2000 bytes.*1999.*max_decoded_bytes"):
        C.load_tensor(path, "a", max_decoded_bytes=1999)
    # load: the sum over all tensors
    assert set(C.load(path, max_decoded_bytes=2300)) == {"a", "b"}
    with pytest.raises(FormatError, match="2300 bytes"):
        C.load(path, max_decoded_bytes=2299)
    # dequantize: the float32 result
    assert C.dequantize(path, "b", max_decoded_bytes=1200).dtype == np.float32
    with pytest.raises(FormatError, match="max_decoded_bytes"):
        C.dequantize(path, "b", max_decoded_bytes=1199)
    with C.HQTFile(path, max_decoded_bytes=500) as f:
        assert np.array_equal(f.read("b"), b)
        with pytest.raises(FormatError, match="max_decoded_bytes"):
            f.read("a")
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(FormatError, match="max_decoded_bytes"):
            C.HQTFile(path, max_decoded_bytes=bad)


def test_cli_max_decoded_bytes(tmp_path, capsys, monkeypatch):
    a = np.arange(1000, dtype=np.uint16)
    path = tmp_path / "lim.hqt"
    C.save(path, {"a": a})
    out = tmp_path / "a.npz"
    capsys.readouterr()
    assert main(["decode", str(path), "-o", str(out), "--max-decoded-bytes", "1999"]) == 1
    err = capsys.readouterr().err
    assert "max_decoded_bytes" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(["decode", str(path), "-o", str(out), "--max-decoded-bytes", "2k"]) == 0
    src = tmp_path / "src.npz"
    np.savez(src, a=a)
    assert main(["verify", str(path), "--against", str(src), "--max-decoded-bytes", "100"]) == 1
    assert main(["-q", "verify", str(path), "--against", str(src)]) == 0
    # the default applies when the option is not given
    import analysis.cli.decode as decode_cmd

    monkeypatch.setattr(decode_cmd, "DEFAULT_MAX_DECODED_BYTES", 1000)
    capsys.readouterr()
    assert main(["decode", str(path), "-o", str(out)]) == 1
    assert "max_decoded_bytes" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["decode", str(path), "-o", str(out), "--max-decoded-bytes", "lots"])
    assert exc.value.code == 2


def test_decode_help_documents_the_default_limit(capsys):
    with pytest.raises(SystemExit):
        main(["decode", "--help"])
    assert "4 GiB" in capsys.readouterr().out


# --------------------------------------------------------------------------- error messages


def test_codec_errors_name_the_file_and_the_tensor(tmp_path):
    # A tensor named like a word of the codec's own messages ("chunk") used to lose the file and tensor prefix.
    rng = np.random.default_rng(3)
    x = rng.integers(0, 16, 500).astype(np.uint8)
    path = tmp_path / "named.hqt"
    C.save(path, {"chunk": x, "other": x[:10].copy()}, chunk_size=64, group=1)
    ti = C.info(path).tensor("chunk")
    raw = bytearray(path.read_bytes())
    # move one bit from chunk 1 to chunk 0 in the chunk index (same total), then re-seal the index CRC:
    # chunk 0 no longer ends on its recorded bit count, which only the codec can see
    off = C.info(path).header_bytes  # "chunk" is the first tensor: its index follows the header
    c0, c1 = struct.unpack_from(">HH", raw, off)
    struct.pack_into(">HH", raw, off, c0 + 1, c1 - 1)
    crc_old = struct.pack("<I", ti.index_crc32)
    crc_new = struct.pack("<I", zlib.crc32(bytes(raw[off : off + align(ti.index_bytes)])))
    bad = tmp_path / "bad.hqt"
    bad.write_bytes(bytes(_replace_in_header(bytes(raw), crc_old, crc_new)))
    with pytest.raises(StreamError) as exc:
        C.load_tensor(bad, "chunk")
    msg = str(exc.value)
    assert msg.startswith(f"{bad}: tensor 'chunk': ") and "chunk" in msg[len(f"{bad}: tensor 'chunk': ") :]
    assert msg.count(str(bad)) == 1
    assert np.array_equal(C.load_tensor(bad, "other"), x[:10])


def test_stored_axis_must_be_an_integer(tmp_path):
    # the writer refuses it (a file storing one anyway: test_container_rules.py); so does the reader
    path = tmp_path / "axis.hqt"
    with pytest.raises(FormatError, match="axis"):
        C.save(path, {"w": np.zeros((2, 3), np.uint8)}, quant={"w": {"scale": np.ones(2, np.float32),
                                                                      "axis": np.zeros(0)}})
    assert not path.exists()


def test_unwritable_output_names_the_users_path(tmp_path):
    x = {"x": np.arange(5, dtype=np.uint8)}
    missing = tmp_path / "no" / "such" / "dir" / "out.hqt"
    with pytest.raises(FileNotFoundError) as exc:
        C.save(missing, x)
    assert exc.value.filename == str(missing) and ".tmp" not in str(exc.value)
    a_dir = tmp_path / "a_directory"
    a_dir.mkdir()
    with pytest.raises(OSError) as exc:
        C.save(a_dir, x)
    assert str(a_dir) in str(exc.value) and ".tmp" not in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_directory"]  # no temporary file left behind


def test_errors_are_entropy_errors_with_one_line(tmp_path, capsys):
    path = _example(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[-8] ^= 0x55  # payload byte
    path.write_bytes(bytes(raw))
    with pytest.raises(EntropyError):
        C.load(path)
    capsys.readouterr()
    assert main(["decode", str(path), "-o", str(tmp_path / "o.npz")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err and "tensor 'x'" in err
