"""Datasets as compact uint8 tensors: prepare once (train/val/test + manifest), then load whole into memory."""
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .atomic import atomic_write
from .compute import CPU
from .errors import PWLError, warn
from .manifests import PreparedManifest, check, read_prepared_manifest
from .sources import read_raw

SPLITS = ("train", "val", "test")


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
    raw, classes, source = read_raw(cfg, raw_dir)
    x_all, y_all = raw["train"]
    tr, va = split_train_val(len(y_all), cfg.val_size, cfg.train_limit, seed)
    x_test, y_test = raw["test"]
    if cfg.test_limit:  # a seeded random subset: an imagefolder's test set comes sorted by class
        keep = torch.randperm(len(y_test), generator=torch.Generator().manual_seed(seed))[:cfg.test_limit].sort().values
        x_test, y_test = x_test[keep], y_test[keep]
    splits = {"train": (x_all[tr], y_all[tr]), "val": (x_all[va], y_all[va]), "test": (x_test, y_test)}
    splits = {name: (pad_to(x, cfg.image_size).contiguous(), y.contiguous()) for name, (x, y) in splits.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # until the new one is written, no stale one is trusted
    files = {}
    for name, (x, y) in splits.items():
        path = out_dir / f"{name}.safetensors"
        atomic_write(path, lambda tmp: save_file({"x": x, "y": y}, str(tmp)))
        files[name] = {"file": path.name, "count": len(y), "sha256": sha256(path),
                       "class_counts": torch.bincount(y, minlength=len(classes)).tolist()}
    xf = splits["train"][0].float() / 255
    manifest = {"dataset": cfg.dataset, "source": source, "classes": classes, "num_classes": len(classes),
                "shape": list(xf.shape[1:]), "mean": xf.mean(dim=(0, 2, 3)).tolist(),
                "std": xf.std(dim=(0, 2, 3)).tolist(), "split_seed": seed,
                "train_indices_sha256": hashlib.sha256(tr.numpy().tobytes()).hexdigest(),
                "val_indices_sha256": hashlib.sha256(va.numpy().tobytes()).hexdigest(), "splits": files}
    _warn_about(manifest)
    path = out_dir / "manifest.json"
    check(PreparedManifest, manifest, path, "prepared-data manifest", "report this as a bug")  # what loads it
    atomic_write(path, json.dumps(manifest, indent=2).encode())  # written last: it vouches for the split files
    return manifest


def _warn_about(manifest: dict) -> None:
    """Data that is usable but probably not what the user meant: say so instead of training on it silently."""
    classes = manifest["classes"]
    for split, consequence in (("train", "the model never learns them"), ("test", "their accuracy is never measured")):
        absent = [c for c, n in zip(classes, manifest["splits"][split]["class_counts"]) if not n]
        if absent:
            warn(f"class(es) {', '.join(absent)} have no images in the {split} split: {consequence}")
    flat = [c for c, s in enumerate(manifest["std"]) if s == 0]
    if flat:
        warn(f"channel(s) {flat} are constant over the training images (std 0): normalising divides by zero")


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
    manifest = read_prepared_manifest(mpath)
    splits = {}
    for name in SPLITS:
        info = manifest["splits"][name]
        path = data_dir / info["file"]
        if not path.exists():
            raise PWLError(f"{path} is missing", "run `dvc repro -f prepare`")
        if verify and sha256(path) != info["sha256"]:
            raise PWLError(f"{path} does not match its checksum in manifest.json (corrupt or edited)",
                           "run `dvc repro -f prepare`")
        splits[name] = _load_split(path, info, manifest)
    return Dataset(manifest, **splits)


def _load_split(path: Path, info: dict, manifest: dict) -> Split:
    """One split file, checked against its manifest entry: a mismatch fails here, not inside a model."""
    fix = "run `dvc repro -f prepare`"
    try:
        t = load_file(str(path))
        x, y = t["x"], t["y"]
    except Exception as e:  # safetensors raises several types for a damaged file
        raise PWLError(f"{path} is not a readable split file ({type(e).__name__}: {e})", fix) from None
    want = (info["count"], *manifest["shape"])
    if x.dtype != torch.uint8 or tuple(x.shape) != want or y.dtype != torch.int64 or tuple(y.shape) != want[:1]:
        raise PWLError(f"{path} holds x {x.dtype} {list(x.shape)} and y {y.dtype} {list(y.shape)}, but "
                       f"manifest.json says uint8 {list(want)} and int64 [{want[0]}]", fix)
    k = manifest["num_classes"]
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < k:
        raise PWLError(f"{path}: labels span {int(y.min())}..{int(y.max())}, outside 0..{k - 1}", fix)
    if torch.bincount(y, minlength=k).tolist() != info["class_counts"]:
        raise PWLError(f"{path}: its labels do not match class_counts in manifest.json", fix)
    return Split(x, y)


# ---------------------------------------------------------------- batches: normalise + augment whole tensors

class Normalizer:
    """uint8 (or float in [0, 1]) -> normalised float, per-channel mean/std from the training split."""

    def __init__(self, mean, std):
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        if self.mean.device != x.device:  # follow the data onto the GPU once
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return (x - self.mean) / self.std


def random_crop(x: torch.Tensor, cfg) -> torch.Tensor:
    """Random crop after reflect padding of size * crop_pad_frac."""
    b, c, h, w = x.shape
    dev = x.device  # on the GPU the random draws stay there too
    p = round(h * cfg.crop_pad_frac)
    if not p:
        return x
    xp = F.pad(x, (p, p, p, p), mode="reflect")
    oy = torch.randint(0, 2 * p + 1, (b, 1), device=dev)
    ox = torch.randint(0, 2 * p + 1, (b, 1), device=dev)
    rows = (oy + torch.arange(h, device=dev))[:, None, :, None].expand(b, c, h, w + 2 * p)
    x = xp.gather(2, rows)
    cols = (ox + torch.arange(w, device=dev))[:, None, None, :].expand(b, c, h, w)
    return x.gather(3, cols)


def random_flip(x: torch.Tensor, cfg) -> torch.Tensor:
    if not cfg.flip:
        return x
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_rotate(x: torch.Tensor, cfg) -> torch.Tensor:
    """Rotation by a uniform angle in [-rotate_deg, rotate_deg] about the centre, zeros outside the image."""
    if not cfg.rotate_deg:
        return x
    b, dev = x.shape[0], x.device
    angle = (torch.rand(b, device=dev) * 2 - 1) * math.radians(cfg.rotate_deg)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros(b, device=dev)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=cfg.rotate_interpolation, padding_mode="zeros", align_corners=False)


AUGMENT_OPS = {"crop": random_crop, "flip": random_flip, "rotate": random_rotate}


def augment(x: torch.Tensor, cfg) -> torch.Tensor:
    """Crop, flip and rotation in `cfg.order` (e.g. crop-flip-rotate): one batched op each, no per-sample
    Python."""
    for op in cfg.order.split("-"):
        x = AUGMENT_OPS[op](x, cfg)
    return x


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize to size x size: the ViT's own resize (pwl.models.vit.ViTEmbed), done before
    augmentation when `augment.at_input_size` asks for it."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


class Batches:
    """Shuffled, augmented, normalised mini-batches from an in-memory uint8 split (last partial batch dropped).
    Under DDP every rank walks the same permutation and takes its own 1/world of each global batch, so the
    number of optimiser steps and the samples of each step do not depend on the number of processes."""

    def __init__(self, split: Split, batch_size: int, norm: Normalizer, aug_cfg, compute=None,
                 resize_to: int | None = None):
        self.split, self.norm, self.aug, self.compute = split, norm, aug_cfg, compute or CPU
        self.resize_to = resize_to  # resize before augmenting (None: as stored)
        self.batch_size = min(batch_size, len(split.y))
        world = self.compute.world_size
        if self.batch_size % world:
            raise PWLError(f"batch size {self.batch_size} does not split evenly over {world} processes",
                           "choose a batch_size divisible by torchrun's --nproc_per_node (the batch size is global)")
        self.steps = len(split.y) // self.batch_size

    def __len__(self):
        return self.steps

    def epoch(self, seed: int):
        """The batches of one epoch; the permutation depends only on `seed`, never on the rank."""
        perm = torch.randperm(len(self.split.y), generator=torch.Generator().manual_seed(seed))
        perm = perm.to(self.split.y.device)
        c = self.compute
        for i in range(self.steps):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size][c.rank::c.world_size]
            x, y = self.split.x[idx], self.split.y[idx]
            if x.device != c.device:  # host data: pinned staging, asynchronous copy
                x, y = x.pin_memory(), y.pin_memory()
            x, y = x.to(c.device, non_blocking=True), y.to(c.device, non_blocking=True)
            x = x.float().div_(255)
            if self.resize_to and x.shape[-1] != self.resize_to:
                x = resize(x, self.resize_to)
            yield c.batch(self.norm(augment(x, self.aug) if self.aug else x)), y
