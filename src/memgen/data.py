"""Datasets: read MNIST-like IDX files, ImageFolder directories/archives or torchvision downloads,
verify them, and cache them as one npz per dataset that every later stage reads.

The cache holds ``x_train``/``x_test`` (uint8, ``[N, H, W, C]``), ``y_train``/``y_test`` (int64)
and ``classes`` (class names, index = label).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memgen.runtime import progress, save_npz

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TORCHVISION_DATASETS = {"MNIST", "FashionMNIST", "KMNIST", "EMNIST", "CIFAR10", "CIFAR100", "SVHN"}


class DataError(RuntimeError):
    """A dataset file is missing, corrupt or not what the config promises."""


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> dict:
        return {"n_train": len(self.x_train), "n_test": len(self.x_test),
                "shape": "x".join(map(str, self.x_train.shape[1:])), "n_classes": self.n_classes}


# --- readers -------------------------------------------------------------------------------------

def read_idx(path: str | os.PathLike, expected_md5: str | None = None) -> np.ndarray:
    """Read one IDX file (optionally gzipped); check the md5 of its decompressed content."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"missing dataset file {path}; put the IDX file there or fix the dataset's "
                        f"'path'/'files' in config.yaml")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot decompress {path} ({err}); the file is corrupt: download it again") from err
    if expected_md5 and hashlib.md5(raw).hexdigest() != expected_md5:
        raise DataError(f"checksum mismatch for {path}: content md5 {hashlib.md5(raw).hexdigest()}, "
                        f"expected {expected_md5}; the file is corrupt or a different version: "
                        f"replace it with the official file")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header promises {tuple(dims)} = {int(np.prod(dims))} bytes, "
                        f"found {data.size}; download it again")
    return data.reshape(dims)


def idx_paths(root: str | os.PathLike, files: dict | None = None) -> dict[str, Path]:
    """The four IDX files of an MNIST-like dataset, each as given or with ``.gz`` added."""
    root = Path(root)
    paths = {}
    for key, name in {**IDX_FILES, **(files or {})}.items():
        path = root / name
        paths[key] = root / f"{name}.gz" if not path.exists() and (root / f"{name}.gz").exists() else path
    return paths


def source_files(spec: dict) -> list[str]:
    """The local files a dataset entry reads (none for downloads); missing ones raise a DataError."""
    if spec["source"] == "torchvision":
        return []
    paths = list(idx_paths(spec["path"], spec.get("files")).values()) if spec["source"] == "idx" else [Path(spec["path"])]
    missing = [str(p) + ("[.gz]" if spec["source"] == "idx" else "") for p in paths if not p.exists()]
    if missing:
        raise DataError(f"missing dataset file(s) {missing}; put them there (see ../shared/data/README.md), "
                        f"or fix 'data_root' / the dataset's 'path' in config.yaml")
    return [str(p) for p in paths]


def read_idx_dataset(root: str | os.PathLike, files: dict | None = None, md5: dict | None = None,
                     classes: list[str] | None = None) -> Dataset:
    """MNIST-like data from four IDX files in ``root`` (``.gz`` or not)."""
    md5 = md5 or {}
    arrays = {key: read_idx(path, md5.get(key)) for key, path in idx_paths(root, files).items()}
    for part in ("train", "test"):
        if len(arrays[f"{part}_images"]) != len(arrays[f"{part}_labels"]):
            raise DataError(f"{root}: {part} has {len(arrays[f'{part}_images'])} images but "
                            f"{len(arrays[f'{part}_labels'])} labels")
    n_classes = int(max(arrays["train_labels"].max(), arrays["test_labels"].max())) + 1
    return Dataset(x_train=arrays["train_images"][..., None], y_train=arrays["train_labels"].astype(np.int64),
                   x_test=arrays["test_images"][..., None], y_test=arrays["test_labels"].astype(np.int64),
                   classes=list(classes) if classes else [str(c) for c in range(n_classes)])


def _decode_image(data: bytes, name: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as err:  # PIL raises many types for broken files
        raise DataError(f"cannot decode image {name} ({err}); the dataset file is corrupt") from err


def read_image_folder(path: str | os.PathLike) -> Dataset:
    """An ImageFolder dataset ``{train,test}/{class}/*.jpg``, as a directory or a ``.tar.gz`` archive.

    Classes are the alphabetically sorted folder names; within a class, files are read in name order.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"missing dataset {path}; put the ImageFolder directory or archive there or fix "
                        f"the dataset's 'path' in config.yaml")
    entries: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                rel = file.relative_to(path).parts
                entries.setdefault((rel[-3], rel[-2]), []).append((rel[-1], file.read_bytes()))
    else:
        try:
            with tarfile.open(path) as tar:
                for member in progress(tar, desc=f"reading {path.name}", unit=" files"):
                    if member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                        parts = Path(member.name).parts
                        entries.setdefault((parts[-3], parts[-2]), []).append(
                            (parts[-1], tar.extractfile(member).read()))
        except (tarfile.TarError, OSError, EOFError) as err:
            reason = " ".join(str(err).split())
            raise DataError(f"cannot read archive {path} ({reason}); it is corrupt or truncated: "
                            f"download it again") from err
    splits = {split for split, _ in entries}
    if not {"train", "test"} <= splits:
        raise DataError(f"{path} must contain train/<class>/ and test/<class>/ folders; found {sorted(splits)}")
    classes = sorted({cls for split, cls in entries if split == "train"})
    test_classes = sorted({cls for split, cls in entries if split == "test"})
    if test_classes != classes:
        raise DataError(f"{path}: train classes {classes} differ from test classes {test_classes}")
    out = {}
    for split in ("train", "test"):
        images, labels = [], []
        for label, cls in enumerate(classes):
            for name, data in sorted(entries.get((split, cls), [])):
                images.append(_decode_image(data, f"{path}:{split}/{cls}/{name}"))
                labels.append(label)
        shapes = {img.shape for img in images}
        if len(shapes) != 1:
            raise DataError(f"{path}: images of the {split} set differ in size {sorted(shapes)[:4]}; "
                            f"resize them to one size first")
        out[split] = (np.stack(images), np.asarray(labels, dtype=np.int64))
    return Dataset(out["train"][0], out["train"][1], out["test"][0], out["test"][1], classes)


def read_torchvision(name: str, root: str | os.PathLike, download: bool = True) -> Dataset:
    """Fetch a dataset through torchvision's downloader (needs internet the first time)."""
    import torchvision

    if name not in TORCHVISION_DATASETS:
        raise DataError(f"torchvision dataset '{name}' is not supported; use one of {sorted(TORCHVISION_DATASETS)}")
    cls = getattr(torchvision.datasets, name)
    parts = {}
    for train in (True, False):
        try:
            ds = cls(root=str(root), train=train, download=download)
        except Exception as err:
            raise DataError(f"torchvision could not provide {name} under {root} ({err}); without internet "
                            f"access use a local mirror (source: idx or imagefolder) instead") from err
        x = np.asarray(ds.data)
        x = x[..., None] if x.ndim == 3 else x
        parts[train] = (x.astype(np.uint8), np.asarray(ds.targets, dtype=np.int64))
    return Dataset(*parts[True], *parts[False], classes=[str(c) for c in ds.classes])


def read_dataset(spec: dict, resources_dir: str | os.PathLike = "resources") -> Dataset:
    """Read a dataset as described by its config entry (``source`` idx | imagefolder | torchvision)."""
    source = spec["source"]
    if source == "idx":
        ds = read_idx_dataset(spec["path"], spec.get("files"), spec.get("md5"), spec.get("classes"))
    elif source == "imagefolder":
        ds = read_image_folder(spec["path"])
    elif source == "torchvision":
        ds = read_torchvision(spec["name"], Path(resources_dir) / spec["name"])
    else:
        raise DataError(f"unknown dataset source '{source}'; use idx, imagefolder or torchvision")
    if spec.get("classes") and source != "idx":
        if len(spec["classes"]) != ds.n_classes:
            raise DataError(f"config lists {len(spec['classes'])} classes but the data has {ds.n_classes}")
        ds.classes = list(spec["classes"])
    verify(ds, spec.get("expect", {}))
    if "limit" in spec:
        ds = subsample(ds, spec["limit"].get("train"), spec["limit"].get("test"), seed=spec["limit"].get("seed", 0))
    return ds


def subsample(ds: Dataset, n_train: int | None, n_test: int | None, seed: int = 0) -> Dataset:
    """A stratified random slice of a verified dataset (for quick trials and CI), in original order."""
    rng = np.random.default_rng(seed)

    def pick(y, n):
        if n is None or n >= len(y):
            return np.arange(len(y))
        per_class = [rng.permutation(np.flatnonzero(y == c))[: max(1, n // ds.n_classes)] for c in range(ds.n_classes)]
        return np.sort(np.concatenate(per_class))

    train, test = pick(ds.y_train, n_train), pick(ds.y_test, n_test)
    return Dataset(ds.x_train[train], ds.y_train[train], ds.x_test[test], ds.y_test[test], ds.classes)


def verify(ds: Dataset, expect: dict) -> None:
    """Check counts, image shape and label range against what the config promises."""
    problems = []
    for key, actual in (("n_train", len(ds.x_train)), ("n_test", len(ds.x_test)), ("n_classes", ds.n_classes)):
        if key in expect and expect[key] != actual:
            problems.append(f"{key} is {actual}, expected {expect[key]}")
    if "shape" in expect and list(ds.x_train.shape[1:]) != list(expect["shape"]):
        problems.append(f"image shape is {list(ds.x_train.shape[1:])}, expected {list(expect['shape'])}")
    if ds.x_test.shape[1:] != ds.x_train.shape[1:]:
        problems.append(f"test images {ds.x_test.shape[1:]} differ from train images {ds.x_train.shape[1:]}")
    for part, y in (("train", ds.y_train), ("test", ds.y_test)):
        if len(y) and (y.min() < 0 or y.max() >= ds.n_classes):
            problems.append(f"{part} labels span {y.min()}..{y.max()}, outside 0..{ds.n_classes - 1}")
        missing = sorted(set(range(ds.n_classes)) - set(np.unique(y).tolist()))
        if missing:
            problems.append(f"{part} set has no example of class(es) {missing}")
    if problems:
        raise DataError("dataset does not match its config: " + "; ".join(problems) +
                        ". Fix the files or the dataset's 'expect' entry in config.yaml")


def check_images(images) -> np.ndarray:
    """Images as stored in the caches: uint8 ``[N, H, W, C]`` (a ``[N, H, W]`` array gains C = 1)."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise TypeError(f"images must be uint8 [N, H, W, C] arrays (as stored in the dataset cache), got {x.dtype}; "
                        "convert floats in [0, 1] with (x * 255).round().astype(np.uint8)")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"images must have shape [N, H, W, C] or [N, H, W], got {x.shape}")
    return x


# --- cache ---------------------------------------------------------------------------------------

def save_cache(ds: Dataset, path: str | os.PathLike) -> None:
    save_npz(path, compress=False, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test,
             classes=np.asarray(ds.classes))


def load_cache(path: str | os.PathLike) -> Dataset:
    with np.load(path) as f:
        return Dataset(f["x_train"], f["y_train"], f["x_test"], f["y_test"], f["classes"].tolist())


def load_labels(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Only the labels and class names of a cache (npz members load lazily, so this skips the images)."""
    with np.load(path) as f:
        return f["y_train"], f["y_test"], f["classes"].tolist()
