"""Raw datasets in their published on-disk formats -> (x uint8 N,C,H,W, y int64) per official split.
Only `prepare` reads these; every later stage sees the prepared tensors (pwl/data.py)."""
import gzip
import math
import os
import pickle
import struct
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .errors import PWLError, warn

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_JPEGS = Path("data/raw/CIFAR-10-images")  # where scripts/get_cifar10.sh puts the cifar10-cpu profile's data  # Debian package dataset-fashion-mnist
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise PWLError(f"{path} is not an IDX file of unsigned bytes", "re-download or reinstall the dataset")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != math.prod(shape):
        raise PWLError(f"{path} is truncated ({arr.size} of {math.prod(shape)} bytes)", "re-download the dataset")
    return arr.reshape(shape)


def _fashion_mnist(root, download: bool, raw_dir: Path):
    candidates = [Path(root)] if root else [SYSTEM_FASHION_MNIST, raw_dir / "FashionMNIST" / "raw"]
    for d in candidates:
        if all((d / f).exists() for pair in FASHION_FILES.values() for f in pair):
            out = {}
            for split, (xi, yi) in FASHION_FILES.items():
                out[split] = (torch.from_numpy(_read_idx(d / xi).copy())[:, None],
                              torch.from_numpy(_read_idx(d / yi).astype(np.int64)))
            source = "debian:dataset-fashion-mnist" if d == SYSTEM_FASHION_MNIST else f"idx:{d}"
            return out, FASHION_CLASSES, source
    if root or not download:
        raise PWLError(f"Fashion-MNIST IDX files not found in {candidates[0]}",
                       "install Debian's dataset-fashion-mnist (scripts/setup.sh does), "
                       "or set data.root to a directory with the four *-ubyte.gz files, or allow data.download")
    from torchvision.datasets import FashionMNIST
    try:
        for train in (True, False):
            FashionMNIST(str(raw_dir), train=train, download=True)
    except Exception as e:  # offline
        raise PWLError(f"could not download Fashion-MNIST: {e}",
                       "install Debian's dataset-fashion-mnist or set data.root to local IDX files") from None
    out, classes, _ = _fashion_mnist(raw_dir / "FashionMNIST" / "raw", False, raw_dir)
    return out, classes, "torchvision-download"


class CifarLayout(NamedTuple):
    """torchvision's python-version CIFAR folder: pickled dicts with `data` (N x 3072 uint8, channel-major)."""
    folder: str
    train: tuple
    test: tuple
    meta: str
    names_key: str
    labels_key: str


CIFAR = {"cifar10": CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                                ("test_batch",), "batches.meta", "label_names", "labels"),
         "cifar100": CifarLayout("cifar-100-python", ("train",), ("test",), "meta", "fine_label_names", "fine_labels")}
CIFAR_PIXELS = 3 * 32 * 32


def _unpickle(path: Path, key: str, fix: str):
    """One pickled CIFAR dict (python 2 pickles, hence latin1; pickles run code, so as in torchvision: trusted
    folders only); anything unreadable names the file."""
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="latin1")
    except Exception as e:
        raise PWLError(f"{path} is not a readable CIFAR pickle ({type(e).__name__}: {e})", fix) from None
    if not isinstance(d, dict) or key not in d:
        raise PWLError(f"{path} is not a CIFAR batch: no {key!r} entry", fix)
    return d


def _cifar_batch(path: Path, labels_key: str, num_classes: int, fix: str):
    d = _unpickle(path, "data", fix)
    data = np.asarray(d["data"])
    if data.dtype != np.uint8 or data.size % CIFAR_PIXELS:
        raise PWLError(f"{path}: data is {data.dtype} of {data.size} values, not uint8 rows of {CIFAR_PIXELS}", fix)
    try:
        labels = np.asarray(d[labels_key], dtype=np.int64).reshape(-1)
    except (KeyError, TypeError, ValueError) as e:
        raise PWLError(f"{path}: no usable {labels_key!r} entry ({type(e).__name__}: {e})", fix) from None
    n = data.size // CIFAR_PIXELS
    if len(labels) != n:
        raise PWLError(f"{path} holds {n} images but {len(labels)} labels", fix)
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise PWLError(f"{path}: labels span {labels.min()}..{labels.max()}, outside 0..{num_classes - 1} "
                       f"({num_classes} class names in the meta file)", fix)
    return data.reshape(n, 3, 32, 32), labels


def _read_cifar(folder: Path, layout: CifarLayout, fix: str):
    """Our reader of torchvision's layout (no md5 list: any well-formed folder works, test-written ones too)."""
    names = _unpickle(folder / layout.meta, layout.names_key, fix)[layout.names_key]
    if not isinstance(names, list) or not names:
        raise PWLError(f"{folder / layout.meta}: {layout.names_key!r} is not a list of class names", fix)
    out = {}
    for split in ("train", "test"):
        parts = [_cifar_batch(folder / f, layout.labels_key, len(names), fix) for f in getattr(layout, split)]
        out[split] = (torch.from_numpy(np.concatenate([x for x, _ in parts])),
                      torch.from_numpy(np.concatenate([y for _, y in parts])))
    return out, [str(c) for c in names]


def _cifar(name: str, root, download: bool, raw_dir: Path):
    layout = CIFAR[name]
    where = Path(root) if root else raw_dir
    folder = where if where.name == layout.folder else where / layout.folder
    files = [*layout.train, *layout.test, layout.meta]
    fix = (f"put torchvision's {layout.folder} folder (python version: {', '.join(files)}) in {folder.parent}, "
           "or set data.root to the directory that holds it; with data.root null, data.download: true fetches "
           "it when online")
    missing = [f for f in files if not (folder / f).is_file()]
    source = f"cifar-python:{folder}"
    if missing and not root and download:
        _download_cifar(name, raw_dir, fix)
        missing, source = [f for f in files if not (folder / f).is_file()], f"torchvision-download:{folder}"
    if missing:
        what = f"{folder} not found" if not folder.is_dir() else f"{folder} lacks {', '.join(missing)}"
        raise PWLError(f"{name}: {what}", fix)
    out, classes = _read_cifar(folder, layout, fix)
    return out, classes, source


def _download_cifar(name: str, raw_dir: Path, fix: str):
    """Fetching and md5-checking the archive is torchvision's job; reading it stays ours."""
    from torchvision.datasets import CIFAR10, CIFAR100
    try:
        (CIFAR10 if name == "cifar10" else CIFAR100)(str(raw_dir), train=False, download=True)
    except Exception as e:  # offline, or a corrupt download
        raise PWLError(f"could not download {name} into {raw_dir} ({type(e).__name__}: {e})", fix) from None


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _visible(p: Path) -> bool:
    """Hidden entries (.git, .DS_Store, macOS `._x.jpg` resource forks) are never data."""
    return not p.name.startswith(".")


def _class_files(split_dir: Path) -> dict:
    """class name -> its sorted image files, from split_dir/<class>/ (hidden folders and files, and other
    suffixes, skipped). An entry that is not a folder (a stray file, a broken or looping symlink) would
    silently lose a class: it is skipped with a warning."""
    classes = {}
    for d in sorted(filter(_visible, split_dir.iterdir())):
        if not d.is_dir():
            why = "a broken or looping symlink" if d.is_symlink() else "not a folder"
            warn(f"imagefolder: skipped {d} ({why}): only folders are classes")
            continue
        classes[d.name] = sorted(p for p in d.iterdir()
                                 if _visible(p) and p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return classes


def _imagefolder_files(root: Path):
    """(classes, {split: (files, labels)}): classes are train's sorted subfolders; test may only use those."""
    fix = (f"lay the images out as {root}/train/<class>/*.png|jpg|jpeg and {root}/test/<class>/*, "
           "one folder per class, the same class names in both")
    for split in ("train", "test"):
        if not (root / split).is_dir():
            if Path(root) == CIFAR10_JPEGS:  # the cifar10-cpu profile's copy: say how to get it
                fix = "run `bash scripts/get_cifar10.sh` (it clones the CIFAR-10 JPEGs there), or " + fix
            raise PWLError(f"imagefolder: {root / split} is not a directory", fix)
    train, test = _class_files(root / "train"), _class_files(root / "test")
    if not train:
        raise PWLError(f"imagefolder: {root / 'train'} has no class folders", fix)
    if len(train) == 1:
        raise PWLError(f"imagefolder: {root / 'train'} has one class folder ({next(iter(train))}): a classifier "
                       "needs at least 2 classes (every accuracy would be 100%)", fix)
    empty = [c for c, files in train.items() if not files]
    if empty:
        raise PWLError(f"imagefolder: train class folders without {'/'.join(IMAGE_SUFFIXES)} images: "
                       f"{', '.join(str(root / 'train' / c) for c in empty)}", fix)
    extra = sorted(set(test) - set(train))
    if extra:
        raise PWLError(f"imagefolder: {root / 'test'} has classes that train lacks: {', '.join(extra)}", fix)
    index = {c: i for i, c in enumerate(train)}
    splits = {}
    for split, by_class in (("train", train), ("test", test)):
        pairs = [(f, index[c]) for c, files in by_class.items() for f in files]
        if not pairs:
            raise PWLError(f"imagefolder: {root / split} holds no {'/'.join(IMAGE_SUFFIXES)} images", fix)
        splits[split] = ([f for f, _ in pairs], torch.tensor([y for _, y in pairs], dtype=torch.int64))
    return list(train), splits


def _to_8bit(im):
    """16-bit grey (Pillow mode I;16*, or I) -> 8-bit L by its high byte, as Pillow itself reads 16-bit RGB;
    a plain convert('L') would clip every value above 255 to white."""
    from PIL import Image
    if im.mode != "I" and not im.mode.startswith("I;16"):
        return im
    a = np.clip(np.asarray(im).astype(np.int64), 0, 65535) >> 8
    return Image.fromarray(a.astype(np.uint8))


def _decode_chunk(paths: list, mode: str, size: int, resize: bool):
    """Worker: decode a chunk once -> (uint8 N,C,size,size, None), or (None, (what, fix)) naming the bad file."""
    from PIL import Image
    out = np.zeros((len(paths), len(mode), size, size), dtype=np.uint8)  # mode "L" or "RGB"
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                im = _to_8bit(im).convert(mode)
                if resize and im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.BILINEAR)
                a = np.asarray(im).reshape(im.height, im.width, -1).transpose(2, 0, 1)
        except Exception as e:
            return None, (f"cannot decode image {path} ({type(e).__name__}: {e})",
                          "replace or delete the file (png/jpg/jpeg are read)")
        h, w = a.shape[1:]
        if h > size or w > size:
            return None, (f"image {path} is {w}x{h}, larger than data.image_size={size}",
                          f"set data.resize: true, or data.image_size >= {max(h, w)}")
        top, left = (size - h) // 2, (size - w) // 2  # centred zero padding, as pad_to
        out[i, :, top:top + h, left:left + w] = a
    return out, None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decode_images(paths: list, channels: int, size: int, resize: bool) -> torch.Tensor:
    """Every file decoded once, in chunks over a process pool (every core) -> uint8 (N, channels, size, size)."""
    cores = _cores()
    step = max(1, min(256, math.ceil(len(paths) / cores)))
    chunks = [paths[i:i + step] for i in range(0, len(paths), step)]
    job = partial(_decode_chunk, mode="L" if channels == 1 else "RGB", size=size, resize=resize)
    if cores > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(min(cores, len(chunks))) as pool:
            results = list(pool.map(job, chunks))
    else:
        results = [job(c) for c in chunks]
    for _, err in results:
        if err:
            raise PWLError(*err)
    return torch.from_numpy(np.concatenate([x for x, _ in results]))


def _imagefolder(cfg):
    root = Path(cfg.root)
    classes, splits = _imagefolder_files(root)
    (train, y_train), (test, y_test) = splits["train"], splits["test"]
    x = decode_images(train + test, cfg.channels, cfg.image_size, cfg.resize)  # one pool for both splits
    out = {"train": (x[:len(train)], y_train), "test": (x[len(train):], y_test)}
    return out, classes, f"imagefolder:{root}"


def read_raw(cfg, raw_dir: Path):
    """-> ({"train"|"test": (x uint8 N,C,H,W, y int64)}, class names, source description)."""
    if cfg.dataset == "fashion-mnist":
        return _fashion_mnist(cfg.root, cfg.download, raw_dir)
    if cfg.dataset in CIFAR:
        return _cifar(cfg.dataset, cfg.root, cfg.download, raw_dir)
    if cfg.dataset == "imagefolder":
        return _imagefolder(cfg)
    raise PWLError(f"unknown dataset {cfg.dataset!r}", "use fashion-mnist, cifar10, cifar100 or imagefolder")
