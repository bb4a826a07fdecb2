"""Files written by the format-version-1 writer read back bit-exact, forever.

tests/data/v1/*.hqt were written once by the version-1 writer (before version 2 existed) and are never rewritten:
shared codebooks, pair-coded tensors, 4-byte chunk-index entries, metadata arrays of every type, empty and
scalar tensors. ``expected.npz`` holds the arrays they were written from, ``manifest.json`` the names, the
metadata and the files' SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

import entropy
import entropy as C

DATA = Path(__file__).parent / "data" / "v1"
MANIFEST = json.loads((DATA / "manifest.json").read_text())


@pytest.fixture(scope="module")
def expected():
    with np.load(DATA / "expected.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("fname", sorted(MANIFEST))
def test_v1_file_reads_bit_exact(fname, expected):
    path = DATA / fname
    entry = MANIFEST[fname]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], "a reference file was rewritten"
    fi = entropy.info(path)
    assert fi.version == 1 and fi.file_bytes == entry["file_bytes"] == path.stat().st_size
    assert fi.metadata == entry["metadata"]
    assert [t.name for t in fi.tensors] == [t["name"] for t in entry["tensors"]]
    back = entropy.load(path)
    assert list(back) == [t["name"] for t in entry["tensors"]]
    for t in entry["tensors"]:
        want = expected[t["key"]]
        got = back[t["name"]]
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), t["name"]
        assert np.array_equal(entropy.load_tensor(path, t["name"]), want)
        ti = fi.tensor(t["name"])
        assert (ti.group, ti.codebook_id) == (t["group"], t["codebook_id"])
        assert ti.layout == "single" and ti.n_codebooks == 1 and ti.channel_axis is None
        quant = entropy.load_quant(path, t["name"])
        assert list(quant) == list(t["quant"])
        for k, key in t["quant"].items():
            w = expected[key]
            if w.ndim == 0:  # 0-d arrays come back as Python scalars of the same kind
                assert quant[k] == w.item() and type(quant[k]) is type(w.item()), (t["name"], k)
            else:
                assert quant[k].dtype == w.dtype and np.array_equal(quant[k], w), (t["name"], k)


@pytest.mark.parametrize("fname", sorted(MANIFEST))
def test_v1_file_accounting_adds_up(fname):
    fi = entropy.info(DATA / fname)
    assert fi.file_bytes == fi.header_bytes + fi.index_bytes + fi.payload_bytes + fi.padding_bytes
    fixed = 32 + fi.file_metadata_bytes + 8  # preamble, metadata table, codebook and tensor counts
    header_pad = fi.header_bytes - fixed - fi.codebook_bytes - fi.tensor_table_bytes
    assert 0 <= header_pad < 8
    assert math.isclose(sum(t.total_bytes for t in fi.tensors) + fixed + header_pad, fi.file_bytes)


def test_v1_channel_reads(expected):
    # a version-1 tensor has no channel axis: whole reads only
    path = DATA / "mixed.hqt"
    with C.HQTFile(path) as f:
        with pytest.raises(entropy.errors.FormatError, match="channel axis"):
            f.read("conv.w4", channels=slice(0, 2))


def test_v1_dequantize(expected):
    path = DATA / "mixed.hqt"
    q = expected["mixed.t0"]
    scale = expected["mixed.t0.q0"]
    zp = expected["mixed.t0.q1"].astype(np.int64)
    want = (q.astype(np.int64) - zp.reshape(())).astype(np.float32) * scale.reshape(-1, 1, 1, 1)
    np.testing.assert_array_equal(entropy.dequantize(path, "conv.w4"), want)


def test_v1_files_survive_every_single_byte_change(tmp_path):
    """The v1 reader keeps its damage detection (exhaustive on the smallest reference file)."""
    raw = (DATA / "mixed.hqt").read_bytes()
    bad = tmp_path / "bad.hqt"
    undetected = []
    for i in range(0, len(raw)):
        mutated = bytearray(raw)
        mutated[i] ^= 0x41
        bad.write_bytes(bytes(mutated))
        try:
            with C.HQTFile(bad) as f:
                f.read_all()
                for n in f.names:
                    f.quant(n)
        except entropy.errors.EntropyError:
            continue
        undetected.append(i)
    assert undetected == []
