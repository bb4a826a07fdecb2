"""Images for calibration and evaluation: built-in real photographs, any folder, ImageNet-style folders.

Built-in photographs (no download: every file ships inside an installed wheel)
-------------------------------------------------------------------------------
Every natural colour photograph found in the project's installed dependencies, in this order:

1. ``astronaut``     scikit-image ``skimage/data/astronaut.png`` (512x512, Eileen Collins, NASA)
2. ``chelsea``       scikit-image ``skimage/data/chelsea.png`` (451x300, a tabby cat)
3. ``coffee``        scikit-image ``skimage/data/coffee.png`` (600x400, a cup of espresso)
4. ``rocket``        scikit-image ``skimage/data/rocket.jpg`` (640x427, a launch)
5. ``motorcycle``    scikit-image ``skimage/data/motorcycle_left.png`` (741x500, left view of a stereo pair)
6. ``motorcycle_r``  scikit-image ``skimage/data/motorcycle_right.png`` (741x500, the right view)
7. ``china``         scikit-learn ``sklearn/datasets/images/china.jpg`` (640x427, a temple)
8. ``flower``        scikit-learn ``sklearn/datasets/images/flower.jpg`` (640x427, a flower)
9. ``grace_hopper``  matplotlib ``matplotlib/mpl-data/sample_data/grace_hopper.jpg`` (512x600, a portrait)

Left out: grey-level images (``camera``, ``coins``, ``moon``, ``brick``, ``grass``, ``gravel``, ``page``, ``text``,
``clock_motion``, ``cell``, ``horse``, ``lfw_subset``), synthetic or drawn ones (``color``, ``logo``, chessboards,
matplotlib's ``logo2`` and ``Minduka_Present_Blue_Pack`` clip art), scientific ones (``hubble_deep_field``,
``retina``, ``ihc``, ``microaneurysms``), a 14x25-pixel animation (``no_time_for_that_tiny.gif``), test plots of
other packages (networkx, sympy, scipy), and every image that scikit-image or scipy fetch on first use.

Deterministic crops
-------------------
Each photo gives ``BOXES_PER_PHOTO`` (23) square boxes, side as a fraction of its short side: one centred box of
0.875 (the standard evaluation crop: the TF EfficientNet "crop padding 32" and torchvision's resize-256/centre-crop
-224 geometry), a 2x2 grid of 0.8, a 3x3 grid of 0.65 and a 3x3 grid of 0.5 (grid boxes evenly spaced from edge to
edge, row-major), each as it is and mirrored left-right: ``CROPS_PER_PHOTO`` = 46 crops, 414 in all. Each crop box
is resampled to the model's input size with the model's interpolation (bicubic for EfficientNet-Lite0).

Calibration and evaluation images come from the same distribution and share no image, nor the mirror image of
one: the 23 boxes of each photo are put in a fixed pseudo-random order (SHA-256 of the box's name, so it never
depends on a library version); the first ``CALIBRATION_BOXES_PER_PHOTO`` (8) boxes of every photo, each as it is
and mirrored, form the calibration pool (144 images), the other 15 boxes the evaluation set (270 images). A crop
and its mirror image always fall on the same side (a learned recipe never fits the mirror image of an image it
is evaluated on). Within a split, every box comes first as it is, then every box mirrored, so a prefix holds as
many different boxes as it can; the calibration pool ends with its last ``CALIBRATION_HELD_OUT_BOXES`` (2) boxes of
every photo in both orientations, so its last quarter (36 images), which recipes hold out to check the choices
they make from data (:mod:`quant.adaround`, :mod:`quant.clip_choice`), shares no image or mirror image with the
rest of the pool. Both lists are round-robin over the photos (item k is photo k mod 9), so every
prefix covers all nine photos: ``builtin_images(prep, n, split="calibration")`` is the first n of the pool,
``split="evaluation"`` the first n of the evaluation set, whatever the other split's size. Boxes of one photo
overlap (the splits share photos, not images or their mirror images).

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
    "BOXES_PER_PHOTO",
    "CROPS_PER_PHOTO",
    "CALIBRATION_POOL",
    "EVALUATION_IMAGES",
    "DEFAULT_CALIBRATION_IMAGES",
    "IMAGE_EXTENSIONS",
    "builtin_photos",
    "builtin_crop_boxes",
    "builtin_images",
    "folder_images",
    "imagenet_folder",
    "iter_batches",
    "loader_workers",
]

log = logging.getLogger(__name__)

# (name, package, file inside the package folder)
_PHOTO_FILES = (
    ("astronaut", "skimage", "data/astronaut.png"),
    ("chelsea", "skimage", "data/chelsea.png"),
    ("coffee", "skimage", "data/coffee.png"),
    ("rocket", "skimage", "data/rocket.jpg"),
    ("motorcycle", "skimage", "data/motorcycle_left.png"),
    ("motorcycle_r", "skimage", "data/motorcycle_right.png"),
    ("china", "sklearn", "datasets/images/china.jpg"),
    ("flower", "sklearn", "datasets/images/flower.jpg"),
    ("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
BUILTIN_PHOTOS = tuple(name for name, _, _ in _PHOTO_FILES)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif")
# (side as a fraction of the short side, grid size along each axis)
_CROP_LEVELS = ((0.875, 1), (0.8, 2), (0.65, 3), (0.5, 3))
BOXES_PER_PHOTO = sum(n * n for _, n in _CROP_LEVELS)
CROPS_PER_PHOTO = 2 * BOXES_PER_PHOTO  # every box as it is and mirrored
CALIBRATION_BOXES_PER_PHOTO = 8  # each box as it is and mirrored: 16 calibration crops per photo
CALIBRATION_HELD_OUT_BOXES = 2  # of those, the last in the pool: the held-out quarter recipes check their choices on
CALIBRATION_PER_PHOTO = 2 * CALIBRATION_BOXES_PER_PHOTO
CALIBRATION_POOL = CALIBRATION_PER_PHOTO * len(_PHOTO_FILES)  # 144
EVALUATION_IMAGES = (CROPS_PER_PHOTO - CALIBRATION_PER_PHOTO) * len(_PHOTO_FILES)  # 270
DEFAULT_CALIBRATION_IMAGES = CALIBRATION_POOL  # every calibration crop

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


def _package_dir(package: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)  # locate the wheel's folder without importing it (slow)
    if spec is None or not spec.submodule_search_locations:
        raise QuantError(f"{package} is not installed; its sample photos are part of the built-in image set")
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=1)
def _photo_arrays() -> tuple[tuple[str, np.ndarray], ...]:
    out = []
    for name, package, rel in _PHOTO_FILES:
        path = _package_dir(package) / rel
        try:
            with Image.open(path) as img:
                out.append((name, np.ascontiguousarray(np.asarray(img.convert("RGB")))))
        except OSError as exc:
            raise QuantError(f"built-in photo {name!r} ({path}) cannot be read: {exc}") from exc
    return tuple(out)


def builtin_photos() -> dict[str, np.ndarray]:
    """The built-in photographs as uint8 RGB arrays (H, W, 3), keyed by name (module docstring)."""
    return {name: arr for name, arr in _photo_arrays()}


def builtin_crop_boxes(width: int, height: int) -> list[tuple[float, float, float, float]]:
    """The ``BOXES_PER_PHOTO`` crop boxes (left, top, right, bottom) of a ``width`` x ``height`` photo."""
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


def _crop_order(photo: str) -> list[tuple[int, bool]]:
    """The photo's crops (box index, mirrored) in split order: its boxes in a fixed pseudo-random order (SHA-256 of
    the box name), the calibration boxes first; within each split every box as it is, then every box mirrored."""
    import hashlib

    boxes = sorted(range(BOXES_PER_PHOTO), key=lambda k: hashlib.sha256(f"{photo}#{k}".encode()).hexdigest())
    held = CALIBRATION_BOXES_PER_PHOTO - CALIBRATION_HELD_OUT_BOXES
    out: list[tuple[int, bool]] = []
    for part in (boxes[:held], boxes[held:CALIBRATION_BOXES_PER_PHOTO], boxes[CALIBRATION_BOXES_PER_PHOTO:]):
        out += [(k, False) for k in part] + [(k, True) for k in part]
    return out


def _crop_name(photo: str, box: int, mirrored: bool) -> str:
    return f"{photo}#{box}" + ("m" if mirrored else "")


def _builtin_items(split: str) -> list[tuple[str, object, int]]:
    if split not in ("calibration", "evaluation", "all"):
        raise QuantError(f"unknown split {split!r}; use 'calibration', 'evaluation' or 'all'")
    photos = _photo_arrays()
    orders = [_crop_order(name) for name, _ in photos]
    boxes = [builtin_crop_boxes(arr.shape[1], arr.shape[0]) for _, arr in photos]
    ranges = {"calibration": range(0, CALIBRATION_PER_PHOTO),
              "evaluation": range(CALIBRATION_PER_PHOTO, CROPS_PER_PHOTO), "all": range(CROPS_PER_PHOTO)}[split]
    items: list[tuple[str, object, int]] = []
    for j in ranges:
        for p, (name, _) in enumerate(photos):
            box, mirrored = orders[p][j]
            items.append((_crop_name(name, box, mirrored), (name, boxes[p][box], mirrored), -1))
    return items


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
            photo, box, mirrored = source
            x = self.preprocessing(Image.fromarray(builtin_photos()[photo]), box)
            return (x.flip(-1) if mirrored else x), label, name
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

    def shard(self, index: int, count: int) -> "ImageSet":
        """Part ``index`` (0-based) of ``count`` contiguous, nearly equal parts, to run one part per machine:
        images ``floor(index * L / count) .. floor((index + 1) * L / count)`` of the ``L`` images; the parts cover
        every image exactly once. The description stays the whole set's."""
        if count < 1 or not 0 <= index < count:
            raise QuantError(f"shard {index + 1}/{count}: need 1 <= K <= N")
        n = len(self.items)
        return self.subset(index * n // count, (index + 1) * n // count)


def builtin_images(
    preprocessing: Preprocessing, count: int | None = DEFAULT_CALIBRATION_IMAGES, *, split: str = "calibration"
) -> ImageSet:
    """Deterministic crops of the built-in photos (module docstring).

    ``split``: "calibration" = the calibration pool (144 crops), "evaluation" = the evaluation set (270 crops,
    disjoint from the pool), "all" = both (pool first). ``count`` keeps the first ``count`` of the split
    (None = all of it; default ``DEFAULT_CALIBRATION_IMAGES``).
    """
    items = _builtin_items(split)
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


def loader_workers(images: ImageSet, batch_size: int) -> int:
    """How many DataLoader worker processes read ``images`` by default: none when they fit in one batch, else one
    per available core (at most 8), so that reading and decoding overlap the model's work."""
    if len(images) <= batch_size:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores))


def iter_batches(images: ImageSet, batch_size: int, *, num_workers: int | None = 0) -> Iterator[Batch]:
    """Batches of ``images`` in order; unreadable files are dropped and listed in ``Batch.skipped``.
    ``num_workers``: DataLoader worker processes reading the images (None: :func:`loader_workers`)."""
    if batch_size < 1:
        raise QuantError(f"batch size must be >= 1, got {batch_size}")
    if num_workers is None:
        num_workers = loader_workers(images, batch_size)
    loader = torch.utils.data.DataLoader(
        images, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate
    )
    yield from loader
