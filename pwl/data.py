"""Datasets as compact uint8 tensors: prepare once (train/val/test + manifest), then load whole into memory."""
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .errors import PWLError
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
    if cfg.test_limit:
        x_test, y_test = x_test[:cfg.test_limit], y_test[:cfg.test_limit]
    splits = {"train": (x_all[tr], y_all[tr]), "val": (x_all[va], y_all[va]), "test": (x_test, y_test)}
    splits = {name: (pad_to(x, cfg.image_size).contiguous(), y.contiguous()) for name, (x, y) in splits.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, (x, y) in splits.items():
        path = out_dir / f"{name}.safetensors"
        save_file({"x": x, "y": y}, str(path))
        files[name] = {"file": path.name, "count": len(y), "sha256": sha256(path),
                       "class_counts": torch.bincount(y, minlength=len(classes)).tolist()}
    xf = splits["train"][0].float() / 255
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
        if self.mean.device != x.device:  # follow the data onto the GPU once
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return (x - self.mean) / self.std


def augment(x: torch.Tensor, cfg) -> torch.Tensor:
    """Random crop with reflect padding, horizontal flip, rotation: one batched op each, no per-sample Python."""
    b, c, h, w = x.shape
    dev = x.device  # on the GPU the random draws stay there too
    p = round(h * cfg.crop_pad_frac)
    if p:
        xp = F.pad(x, (p, p, p, p), mode="reflect")
        oy = torch.randint(0, 2 * p + 1, (b, 1), device=dev)
        ox = torch.randint(0, 2 * p + 1, (b, 1), device=dev)
        rows = (oy + torch.arange(h, device=dev))[:, None, :, None].expand(b, c, h, w + 2 * p)
        x = xp.gather(2, rows)
        cols = (ox + torch.arange(w, device=dev))[:, None, None, :].expand(b, c, h, w)
        x = x.gather(3, cols)
    if cfg.flip:
        flip = torch.rand(b, device=dev) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if cfg.rotate_deg:
        angle = (torch.rand(b, device=dev) * 2 - 1) * math.radians(cfg.rotate_deg)
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros(b, device=dev)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x
