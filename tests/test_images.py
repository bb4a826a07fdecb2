"""Built-in photos, deterministic crops, folders and ImageNet-style folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from quant.errors import QuantError
from quant.images import (
    BUILTIN_PHOTOS,
    CROPS_PER_PHOTO,
    Preprocessing,
    builtin_crop_boxes,
    builtin_images,
    builtin_photos,
    folder_images,
    imagenet_folder,
    iter_batches,
)

PREP = Preprocessing(size=32, crop_fraction=0.875, interpolation="bilinear", mean=(0, 0, 0), std=(1, 1, 1))


def test_builtin_photos_are_real_colour_photos():
    photos = builtin_photos()
    assert tuple(photos) == BUILTIN_PHOTOS
    for name, arr in photos.items():
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, name
        assert min(arr.shape[:2]) >= 300, name
        assert arr.std() > 20, name  # not a flat or synthetic image


def test_crop_boxes_cover_scales_and_stay_inside():
    boxes = builtin_crop_boxes(600, 400)
    assert len(boxes) == CROPS_PER_PHOTO == 14
    sides = sorted({round(r - l, 6) for l, t, r, b in boxes})
    assert sides == [200.0, 280.0, 350.0]  # 0.5, 0.7 and 0.875 of the short side
    for l, t, r, b in boxes:
        assert 0 <= l < r <= 600 and 0 <= t < b <= 400
        assert abs((r - l) - (b - t)) < 1e-9
    assert boxes[0] == (125.0, 25.0, 475.0, 375.0)  # centred evaluation crop


def test_builtin_splits_are_deterministic_and_disjoint():
    cal = builtin_images(PREP)
    assert len(cal) == 32
    assert {name.split("#")[0] for name, _, _ in cal.items[:7]} == set(BUILTIN_PHOTOS)
    ev = builtin_images(PREP, None, split="evaluation")
    every = builtin_images(PREP, None, split="all")
    assert len(every) == 7 * CROPS_PER_PHOTO and len(ev) == len(every) - 32
    assert not {n for n, _, _ in cal.items} & {n for n, _, _ in ev.items}
    a = next(iter(iter_batches(cal, 4))).images
    b = next(iter(iter_batches(builtin_images(PREP), 4))).images
    assert torch.equal(a, b) and a.shape == (4, 3, 32, 32)
    with pytest.raises(QuantError, match="only"):
        builtin_images(PREP, 1000)
    with pytest.raises(QuantError, match="split"):
        builtin_images(PREP, split="train")


def test_preprocessing_normalises_per_channel():
    prep = Preprocessing(size=8, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0))
    img = Image.fromarray(np.full((20, 30, 3), 50, dtype=np.uint8))
    x = prep(img)
    assert x.shape == (3, 8, 8)
    assert torch.allclose(x[:, 0, 0], torch.tensor([20.0, 7.5, 4.0]))


def _write_png(path, value):
    Image.fromarray(np.full((40, 50, 3), value, dtype=np.uint8)).save(path)


def test_folder_skips_unreadable_files_and_counts_them(tmp_path):
    (tmp_path / "sub").mkdir()
    _write_png(tmp_path / "a.png", 10)
    _write_png(tmp_path / "sub" / "b.png", 200)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    images = folder_images(tmp_path, PREP)
    assert len(images) == 3 and not images.labelled
    batches = list(iter_batches(images, 2))
    got = [n for b in batches for n in b.names]
    skipped = [s for b in batches for s in b.skipped]
    assert got == ["a.png", "sub/b.png"]
    assert len(skipped) == 1 and skipped[0].endswith("broken.jpg")
    with pytest.raises(QuantError, match="no image files"):
        folder_images(_empty(tmp_path), PREP)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_imagenet_folder_labels(tmp_path):
    for cls, v in (("n01440764", 0), ("n01443537", 100)):
        (tmp_path / cls).mkdir()
        _write_png(tmp_path / cls / "x.png", v)
    images = imagenet_folder(tmp_path, PREP)
    assert images.labelled and [lab for _, _, lab in images.items] == [0, 1]
    mapped = imagenet_folder(tmp_path, PREP, class_index={"n01440764": 7, "n01443537": 3})
    assert [lab for _, _, lab in mapped.items] == [7, 3]
    num = tmp_path / "num"
    (num / "281").mkdir(parents=True)
    _write_png(num / "281" / "cat.png", 5)
    assert [lab for _, _, lab in imagenet_folder(num, PREP).items] == [281]
    batch = next(iter(iter_batches(images, 8)))
    assert batch.labels.tolist() == [0, 1]
    with pytest.raises(QuantError, match="not in the class index"):
        imagenet_folder(tmp_path, PREP, class_index={"n01440764": 0})
