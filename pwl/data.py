"""Datasets as compact uint8 tensors: prepare once (train/val/test + manifest), then load whole into memory."""
import gzip
import hashlib
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .errors import PWLError

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------- raw sources -> (x uint8 NCHW, y int64)

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


def _cifar(name: str, root, download: bool, raw_dir: Path):
    from torchvision.datasets import CIFAR10, CIFAR100
    cls = CIFAR10 if name == "cifar10" else CIFAR100
    where = Path(root) if root else raw_dir
    out = {}
    try:
        for split in ("train", "test"):
            ds = cls(str(where), train=split == "train", download=download and not root)
            out[split] = (torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                          torch.tensor(ds.targets, dtype=torch.int64))
    except Exception as e:
        raise PWLError(f"{name} not found or unreadable in {where} ({e})",
                       f"put torchvision's {cls.base_folder} folder (python version) in {where}, "
                       "or set data.root to the directory that holds it, or allow data.download when online") from None
    return out, list(ds.classes), f"torchvision:{where}"


def read_raw(dataset: str, root, download: bool, raw_dir: Path):
    if dataset == "fashion-mnist":
        return _fashion_mnist(root, download, raw_dir)
    if dataset in ("cifar10", "cifar100"):
        return _cifar(dataset, root, download, raw_dir)
    raise PWLError(f"unknown dataset {dataset!r}", "use fashion-mnist, cifar10 or cifar100")


# ---------------------------------------------------------------- prepare: split, pad, write

def pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h > size or w > size:
        raise PWLError(f"images are {h}x{w}, larger than data.image_size={size}", f"set data.image_size >= {max(h, w)}")
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(x, (left, size - w - left, top, size - h - top)) if (h, w) != (size, size) else x


def split_train_val(n: int, val_size: int, train_limit: int, seed: int):
    if val_size >= n:
        raise PWLError(f"data.val_size={val_size} leaves no training images (the training set has {n})",
                       f"choose data.val_size < {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = perm[:val_size], perm[val_size:]
    if train_limit:
        train = train[:train_limit]
    return train.sort().values, val.sort().values


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare(cfg, seed: int, out_dir: Path, raw_dir: Path) -> dict:
    """Write train/val/test safetensors (x: uint8 N,C,H,W; y: int64) and manifest.json into out_dir."""
    raw, classes, source = read_raw(cfg.dataset, cfg.root, cfg.download, raw_dir)
    x_all, y_all = raw["train"]
    tr, va = split_train_val(len(y_all), cfg.val_size, cfg.train_limit, seed)
    x_test, y_test = raw["test"]
    if cfg.test_limit:
        x_test, y_test = x_test[:cfg.test_limit], y_test[:cfg.test_limit]
    splits = {"train": (x_all[tr], y_all[tr]), "val": (x_all[va], y_all[va]), "test": (x_test, y_test)}
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, (x, y) in splits.items():
        path = out_dir / f"{name}.safetensors"
        save_file({"x": pad_to(x, cfg.image_size).contiguous(), "y": y.contiguous()}, str(path))
        files[name] = {"file": path.name, "count": len(y), "sha256": sha256(path),
                       "class_counts": torch.bincount(y, minlength=len(classes)).tolist()}
    xf = pad_to(splits["train"][0], cfg.image_size).float() / 255
    manifest = {"dataset": cfg.dataset, "source": source, "classes": classes, "num_classes": len(classes),
                "shape": list(xf.shape[1:]), "mean": xf.mean(dim=(0, 2, 3)).tolist(),
                "std": xf.std(dim=(0, 2, 3)).tolist(), "split_seed": seed,
                "train_indices_sha256": hashlib.sha256(tr.numpy().tobytes()).hexdigest(),
                "val_indices_sha256": hashlib.sha256(va.numpy().tobytes()).hexdigest(), "splits": files}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


# ---------------------------------------------------------------- load prepared data

@dataclass
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W)
    y: torch.Tensor  # int64 (N,)


@dataclass
class Dataset:
    manifest: dict
    train: Split
    val: Split
    test: Split

    @property
    def in_chans(self) -> int:
        return self.manifest["shape"][0]

    @property
    def image_size(self) -> int:
        return self.manifest["shape"][1]

    @property
    def num_classes(self) -> int:
        return self.manifest["num_classes"]


def load_prepared(data_dir: Path, verify: bool = True) -> Dataset:
    data_dir = Path(data_dir)
    mpath = data_dir / "manifest.json"
    if not mpath.exists():
        raise PWLError(f"no prepared dataset in {data_dir} (manifest.json missing)", "run `dvc repro prepare`")
    manifest = json.loads(mpath.read_text())
    splits = {}
    for name in SPLITS:
        info = manifest["splits"][name]
        path = data_dir / info["file"]
        if not path.exists():
            raise PWLError(f"{path} is missing", "run `dvc repro -f prepare`")
        if verify and sha256(path) != info["sha256"]:
            raise PWLError(f"{path} does not match its checksum in manifest.json (corrupt or edited)",
                           "run `dvc repro -f prepare`")
        t = load_file(str(path))
        splits[name] = Split(t["x"], t["y"])
    return Dataset(manifest, **splits)


# ---------------------------------------------------------------- batches: normalise + augment whole tensors

class Normalizer:
    """uint8 (or float in [0, 1]) -> normalised float, per-channel mean/std from the training split."""

    def __init__(self, mean, std):
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        return (x - self.mean) / self.std


def augment(x: torch.Tensor, cfg) -> torch.Tensor:
    """Random crop with reflect padding, horizontal flip, rotation: one batched op each, no per-sample Python."""
    b, c, h, w = x.shape
    p = round(h * cfg.crop_pad_frac)
    if p:
        xp = F.pad(x, (p, p, p, p), mode="reflect")
        oy = torch.randint(0, 2 * p + 1, (b, 1))
        ox = torch.randint(0, 2 * p + 1, (b, 1))
        rows = (oy + torch.arange(h))[:, None, :, None].expand(b, c, h, w + 2 * p)
        x = xp.gather(2, rows)
        cols = (ox + torch.arange(w))[:, None, None, :].expand(b, c, h, w)
        x = x.gather(3, cols)
    if cfg.flip:
        flip = torch.rand(b) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if cfg.rotate_deg:
        angle = (torch.rand(b) * 2 - 1) * math.radians(cfg.rotate_deg)
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros(b)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x
