"""Images for calibration and evaluation: built-in real photographs, any folder, ImageNet-style folders.

Built-in photographs (no download: every file ships inside an installed wheel)
-------------------------------------------------------------------------------
Seven natural colour photographs, in this order:

1. ``astronaut``  scikit-image ``skimage/data/astronaut.png`` (512x512, Eileen Collins, NASA)
2. ``chelsea``    scikit-image ``skimage/data/chelsea.png`` (451x300, a tabby cat)
3. ``coffee``     scikit-image ``skimage/data/coffee.png`` (600x400, a cup of espresso)
4. ``rocket``     scikit-image ``skimage/data/rocket.jpg`` (640x427, a launch)
5. ``motorcycle`` scikit-image ``skimage/data/motorcycle_left.png`` (741x500, left view of the stereo pair)
6. ``china``      scikit-learn ``sklearn/datasets/images/china.jpg`` (640x427, a temple)
7. ``flower``     scikit-learn ``sklearn/datasets/images/flower.jpg`` (640x427, a flower)

Other scikit-image images are left out: grey-level, synthetic (``color``, ``logo``, chessboards) or
scientific (``hubble_deep_field``, ``retina``, ``immunohistochemistry``), or fetched with pooch on first use.

Deterministic crops
-------------------
Each photo gives 14 square crops (``CROPS_PER_PHOTO``), side given as a fraction of its short side:

* crop 0: centred, side 0.875 (exactly the standard evaluation crop: the TF EfficientNet "crop padding 32"
  and torchvision's resize-256/centre-crop-224 geometry);
* crops 1-4: a 2x2 grid of side 0.7, corners of the photo (row-major);
* crops 5-13: a 3x3 grid of side 0.5, evenly spaced from edge to edge (row-major).

Crop ``k`` of the built-in sequence is crop ``k // 7`` of photo ``k % 7`` (round-robin, so any prefix
covers every photo). Each crop box is resampled to the model's input size with the model's interpolation
(bicubic for EfficientNet-Lite0). The default 32 calibration images are crops 0-31 (``split="calibration"``);
the evaluation images are all 98 crops (``split="all"``) or crops 32-97 (``split="evaluation"``, disjoint
from calibration).

Folders
-------
``folder_images(DIR)``: every file below DIR whose extension is an image extension (``IMAGE_EXTENSIONS``),
sorted by path, unlabelled. ``imagenet_folder(DIR)``: ImageFolder layout ``DIR/<class>/<image>``; the class
index of a folder is (in this order) its entry in ``class_index`` when given, the integer itself when the
folder name is an integer ("281"), else its position in the sorted list of class folders (the ImageNet-1k
convention: index = rank of the WordNet id among the 1000 sorted ids, correct when all 1000 folders are
present). Files that cannot be decoded are skipped and counted in ``Batch.skipped``.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from quant.errors import QuantError

__all__ = [
    "Preprocessing",
    "ImageSet",
    "Batch",
    "BUILTIN_PHOTOS",
    "CROPS_PER_PHOTO",
    "IMAGE_EXTENSIONS",
    "builtin_photos",
    "builtin_crop_boxes",
    "builtin_images",
    "folder_images",
    "imagenet_folder",
    "iter_batches",
]

log = logging.getLogger(__name__)

BUILTIN_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "china", "flower")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif")
# (side as a fraction of the short side, grid size along each axis)
_CROP_LEVELS = ((0.875, 1), (0.7, 2), (0.5, 3))
CROPS_PER_PHOTO = sum(n * n for _, n in _CROP_LEVELS)
DEFAULT_CALIBRATION_IMAGES = 32

_INTERPOLATIONS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes a model input.

    A square box (default: centred, side ``crop_fraction`` of the short side) is resampled to
    ``size`` x ``size`` pixels with ``interpolation``, then each RGB channel is normalised as
    ``(pixel - mean) / std`` with pixels in 0..255.
    """

    size: int = 224
    crop_fraction: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485 * 255, 0.456 * 255, 0.406 * 255)
    std: tuple[float, float, float] = (0.229 * 255, 0.224 * 255, 0.225 * 255)

    def centre_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The centred evaluation crop box (left, top, right, bottom) in pixels."""
        side = min(width, height) * self.crop_fraction
        left, top = (width - side) / 2, (height - side) / 2
        return (left, top, left + side, top + side)

    def __call__(self, image: Image.Image, box: Sequence[float] | None = None) -> torch.Tensor:
        """Float32 tensor (3, size, size) of ``image`` cropped to ``box`` (default: centre box)."""
        if self.interpolation not in _INTERPOLATIONS:
            raise QuantError(f"unknown interpolation {self.interpolation!r}; use one of {sorted(_INTERPOLATIONS)}")
        image = image.convert("RGB")
        if box is None:
            box = self.centre_box(*image.size)
        image = image.resize((self.size, self.size), _INTERPOLATIONS[self.interpolation], box=tuple(box))
        x = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return (x - mean) / std


@functools.lru_cache(maxsize=1)
def _photo_arrays() -> tuple[tuple[str, np.ndarray], ...]:
    import importlib.util

    import skimage.data as skdata

    # the files behind sklearn.datasets.load_sample_images(), read without importing scikit-learn (slow)
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise QuantError("scikit-learn is not installed; its sample photos are part of the built-in image set")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "images"
    by_name = {}
    for stem in ("china", "flower"):
        with Image.open(folder / f"{stem}.jpg") as img:
            by_name[stem] = np.asarray(img.convert("RGB"))
    photos = {
        "astronaut": skdata.astronaut(),
        "chelsea": skdata.chelsea(),
        "coffee": skdata.coffee(),
        "rocket": skdata.rocket(),
        "motorcycle": skdata.stereo_motorcycle()[0],
        "china": by_name["china"],
        "flower": by_name["flower"],
    }
    return tuple((name, np.ascontiguousarray(photos[name])) for name in BUILTIN_PHOTOS)


def builtin_photos() -> dict[str, np.ndarray]:
    """The seven built-in photographs as uint8 RGB arrays (H, W, 3), keyed by name (module docstring)."""
    return {name: arr for name, arr in _photo_arrays()}


def builtin_crop_boxes(width: int, height: int) -> list[tuple[float, float, float, float]]:
    """The ``CROPS_PER_PHOTO`` crop boxes (left, top, right, bottom) of a ``width`` x ``height`` photo."""
    boxes = []
    short = min(width, height)
    for frac, n in _CROP_LEVELS:
        side = short * frac
        xs = [(width - side) / 2] if n == 1 else list(np.linspace(0.0, width - side, n))
        ys = [(height - side) / 2] if n == 1 else list(np.linspace(0.0, height - side, n))
        for top in ys:
            for left in xs:
                boxes.append((float(left), float(top), float(left + side), float(top + side)))
    return boxes


@dataclass
class Batch:
    """One batch: images (N, 3, H, W), labels (N,) int64 (-1 = unknown), names, and skipped file paths."""

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    skipped: list[str] = field(default_factory=list)


class ImageSet(torch.utils.data.Dataset):
    """A list of images loaded lazily; ``__getitem__`` returns (tensor, label, name) or (None, -1, path)."""

    def __init__(
        self,
        items: Sequence[tuple[str, object, int]],
        preprocessing: Preprocessing,
        *,
        description: str = "",
    ) -> None:
        # items: (name, source, label); source is a file path or (photo name, box)
        self.items = list(items)
        self.preprocessing = preprocessing
        self.description = description

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labelled(self) -> bool:
        """True when every image has a class label (>= 0)."""
        return bool(self.items) and all(label >= 0 for _, _, label in self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, str]:
        name, source, label = self.items[index]
        if isinstance(source, tuple):
            photo, box = source
            arr = builtin_photos()[photo]
            return self.preprocessing(Image.fromarray(arr), box), label, name
        try:
            with Image.open(source) as img:
                img.load()
                return self.preprocessing(img), label, name
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
            log.warning("skipping unreadable image %s: %s", source, exc)
            return None, -1, str(source)

    def subset(self, start: int, stop: int | None = None) -> "ImageSet":
        """Images ``start..stop`` (a view with the same preprocessing)."""
        return ImageSet(self.items[start:stop], self.preprocessing, description=self.description)


def builtin_images(
    preprocessing: Preprocessing, count: int | None = DEFAULT_CALIBRATION_IMAGES, *, split: str = "calibration"
) -> ImageSet:
    """Deterministic crops of the built-in photos (module docstring).

    ``split``: "calibration" = crops 0..count-1 (default 32), "evaluation" = crops after the first 32
    (disjoint from calibration), "all" = every crop. ``count`` limits the number (None = all of the split).
    """
    photos = _photo_arrays()
    per_photo = [builtin_crop_boxes(arr.shape[1], arr.shape[0]) for _, arr in photos]
    items = []
    for k in range(len(photos) * CROPS_PER_PHOTO):
        p, c = k % len(photos), k // len(photos)
        name = photos[p][0]
        items.append((f"{name}#{c}", (name, per_photo[p][c]), -1))
    if split == "evaluation":
        items = items[DEFAULT_CALIBRATION_IMAGES:]
    elif split not in ("calibration", "all"):
        raise QuantError(f"unknown split {split!r}; use 'calibration', 'evaluation' or 'all'")
    if count is not None:
        if count < 1:
            raise QuantError(f"the number of images must be >= 1, got {count}")
        if count > len(items):
            raise QuantError(f"the built-in {split} set has only {len(items)} images, {count} were asked for")
        items = items[:count]
    return ImageSet(items, preprocessing, description=f"built-in photos ({split}, {len(items)} crops)")


def _image_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise QuantError(f"image folder {root} does not exist or is not a directory")
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for fname in filenames:
            if fname.lower().endswith(IMAGE_EXTENSIONS) and not fname.startswith("."):
                files.append(Path(dirpath) / fname)
    return sorted(files)


def folder_images(path: str | os.PathLike, preprocessing: Preprocessing, *, limit: int | None = None) -> ImageSet:
    """Every image file below ``path`` (sorted, recursive), unlabelled; ``limit`` keeps the first ones."""
    root = Path(path)
    files = _image_files(root)
    if not files:
        raise QuantError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found in {root}")
    files = files[:limit] if limit else files
    items = [(str(f.relative_to(root)), str(f), -1) for f in files]
    return ImageSet(items, preprocessing, description=f"{root} ({len(items)} files)")


def imagenet_folder(
    path: str | os.PathLike,
    preprocessing: Preprocessing,
    *,
    class_index: dict[str, int] | None = None,
    limit: int | None = None,
) -> ImageSet:
    """Labelled images in the ImageFolder layout ``path/<class>/<image>`` (class rule: module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise QuantError(f"ImageNet folder {root} does not exist or is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise QuantError(f"{root} has no class sub-folders (expected {root}/<class>/<image>)")
    items = []
    for rank, cls in enumerate(classes):
        if class_index is not None:
            if cls not in class_index:
                raise QuantError(f"class folder {cls!r} of {root} is not in the class index")
            label = int(class_index[cls])
        elif cls.isdigit():
            label = int(cls)
        else:
            label = rank
        for f in _image_files(root / cls):
            items.append((str(f.relative_to(root)), str(f), label))
    if not items:
        raise QuantError(f"no image files found below the class folders of {root}")
    # interleave deterministically is not needed: order is sorted by class then file
    items = items[:limit] if limit else items
    return ImageSet(items, preprocessing, description=f"{root} ({len(items)} labelled files, {len(classes)} classes)")


def _collate(samples: list[tuple[torch.Tensor | None, int, str]]) -> Batch:
    good = [s for s in samples if s[0] is not None]
    skipped = [s[2] for s in samples if s[0] is None]
    if good:
        images = torch.stack([s[0] for s in good])
    else:
        images = torch.empty(0)
    labels = torch.tensor([s[1] for s in good], dtype=torch.int64)
    return Batch(images, labels, [s[2] for s in good], skipped)


def iter_batches(images: ImageSet, batch_size: int, *, num_workers: int = 0) -> Iterator[Batch]:
    """Batches of ``images`` in order; unreadable files are dropped and listed in ``Batch.skipped``."""
    if batch_size < 1:
        raise QuantError(f"batch size must be >= 1, got {batch_size}")
    loader = torch.utils.data.DataLoader(
        images, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate
    )
    yield from loader
