"""Built-in photos, deterministic crops, folders and ImageNet-style folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from quant.errors import QuantError
from quant.images import (
    BOXES_PER_PHOTO,
    BUILTIN_PHOTOS,
    CALIBRATION_POOL,
    CROPS_PER_PHOTO,
    EVALUATION_IMAGES,
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
    assert tuple(photos) == BUILTIN_PHOTOS and len(photos) == 9
    for name, arr in photos.items():
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, name
        assert min(arr.shape[:2]) >= 300, name
        assert arr.std() > 20, name  # not a flat or synthetic image
        rgb = arr.astype(np.float64)
        assert (rgb[..., 0] - rgb[..., 1]).std() > 5 or (rgb[..., 2] - rgb[..., 1]).std() > 5, name  # colour
    # nine different photographs (the two motorcycle views differ too)
    small = {n: np.asarray(Image.fromarray(a).resize((16, 16))).astype(np.float64) for n, a in photos.items()}
    names = list(small)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(small[a] - small[b]).mean() > 2, (a, b)


def test_crop_boxes_cover_scales_and_stay_inside():
    boxes = builtin_crop_boxes(600, 400)
    assert len(boxes) == BOXES_PER_PHOTO == 23 and CROPS_PER_PHOTO == 46
    sides = sorted({round(r - l, 6) for l, t, r, b in boxes})
    assert sides == [200.0, 260.0, 320.0, 350.0]  # 0.5, 0.65, 0.8 and 0.875 of the short side
    for l, t, r, b in boxes:
        assert 0 <= l < r <= 600 and 0 <= t < b <= 400
        assert abs((r - l) - (b - t)) < 1e-9
    assert boxes[0] == (125.0, 25.0, 475.0, 375.0)  # centred evaluation crop
    assert len(set(boxes)) == len(boxes)


def _names(images):
    return [n for n, _, _ in images.items]


def test_builtin_splits_are_disjoint_samples_of_every_photo():
    cal = builtin_images(PREP, None)
    ev = builtin_images(PREP, None, split="evaluation")
    every = builtin_images(PREP, None, split="all")
    assert len(cal) == CALIBRATION_POOL == 144 and len(ev) == EVALUATION_IMAGES == 270
    assert len(every) == 9 * CROPS_PER_PHOTO == 414
    assert not set(_names(cal)) & set(_names(ev))
    assert sorted(_names(cal) + _names(ev)) == sorted(_names(every)) and len(set(_names(every))) == 414
    for split in (cal, ev):
        photo = [n.split("#")[0] for n in _names(split)]
        # round robin: any 9 consecutive images are the nine photos
        for k in range(0, len(photo), 9):
            assert photo[k:k + 9] == list(BUILTIN_PHOTOS)
        # both splits mix scales and mirrored crops (the same distribution)
        boxes = [int(n.split("#")[1].rstrip("m")) for n in _names(split)]
        assert len({b for b in boxes if b >= 14}) > 3 and len({b for b in boxes if 1 <= b < 14}) > 3
        mirrored = sum(n.endswith("m") for n in _names(split)) / len(split)
        assert 0.3 < mirrored < 0.7
    # a prefix of the calibration split stays a prefix; the evaluation split does not depend on it
    assert _names(builtin_images(PREP, 20)) == _names(cal)[:20]
    assert _names(builtin_images(PREP, 30, split="evaluation")) == _names(ev)[:30]
    a = next(iter(iter_batches(cal, 4))).images
    b = next(iter(iter_batches(builtin_images(PREP), 4))).images
    assert torch.equal(a, b) and a.shape == (4, 3, 32, 32)
    with pytest.raises(QuantError, match="only"):
        builtin_images(PREP, 1000)
    with pytest.raises(QuantError, match="split"):
        builtin_images(PREP, split="train")


def test_a_crop_and_its_mirror_image_fall_on_the_same_side():
    cal = {n.rstrip("m") for n in _names(builtin_images(PREP, None))}
    ev = {n.rstrip("m") for n in _names(builtin_images(PREP, None, split="evaluation"))}
    assert not cal & ev  # no box (as it is or mirrored) is in both splits
    for split, per_photo in ((cal, 8), (ev, 15)):
        for photo in BUILTIN_PHOTOS:
            assert sum(n.split("#")[0] == photo for n in split) == per_photo
    # within a split every box comes first as it is: the first 54 calibration crops are 54 different boxes
    first = _names(builtin_images(PREP, 54))
    assert not any(n.endswith("m") for n in first) and len({n.rstrip("m") for n in first}) == 54
    # the last quarter of the pool (what recipes hold out) is closed under mirroring, and shares no box with the rest
    pool = _names(builtin_images(PREP, None))
    held, learned = {n.rstrip("m") for n in pool[108:]}, {n.rstrip("m") for n in pool[:108]}
    assert len(pool[108:]) == 36 and len(held) == 18 and not held & learned


def test_mirrored_crop_is_the_flipped_crop():
    every = builtin_images(PREP, None, split="all")
    index = {n: i for i, n in enumerate(_names(every))}
    name = next(n for n in index if not n.endswith("m"))
    x, _, _ = every[index[name]]
    xm, _, _ = every[index[name + "m"]]
    assert torch.equal(xm, x.flip(-1)) and not torch.equal(xm, x)


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
