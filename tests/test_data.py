"""Dataset preparation from (fake) Fashion-MNIST IDX files, manifest checks, loading and augmentation."""
import gzip
import json
import struct

import numpy as np
import pytest
import torch

from pwl.config import AugmentConfig, DataConfig
from pwl.data import (FASHION_CLASSES, FASHION_FILES, Normalizer, Split, augment, load_prepared, pad_to,
                      prepare, split_train_val)
from pwl.errors import PWLError
from pwl.train import Batches

N_TRAIN, N_TEST = 60, 20


def write_idx(path, arr: np.ndarray):
    """IDX: two zero bytes, dtype 0x08 (ubyte), ndim, big-endian uint32 dims, then the raw bytes."""
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def fake_images(n: int, tag: int) -> np.ndarray:
    """Unique images: pixel (0,0) holds the index, pixel (0,1) a tag (train=1, test=2), the rest noise."""
    rng = np.random.default_rng(tag)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    x[:, 0, 0] = np.arange(n)
    x[:, 0, 1] = tag
    return x


@pytest.fixture
def raw_dir(tmp_path):
    d = tmp_path / "raw"
    d.mkdir()
    for split, n, tag in (("train", N_TRAIN, 1), ("test", N_TEST, 2)):
        xi, yi = FASHION_FILES[split]
        write_idx(d / xi, fake_images(n, tag))
        write_idx(d / yi, (np.arange(n) % 10).astype(np.uint8))
    return d


def _prepare(raw_dir, tmp_path, name="prepared", seed=0, **kw):
    cfg = DataConfig(root=str(raw_dir), download=False, val_size=10, image_size=32, **kw)
    out = tmp_path / name
    return prepare(cfg, seed, out, tmp_path / "unused_raw"), out


def _keys(x: torch.Tensor) -> list[tuple]:
    """(tag, index) read back from the padded images (content starts at offset 2)."""
    return [(int(img[0, 2, 3]), int(img[0, 2, 2])) for img in x]


def test_prepare_splits_counts_padding_and_manifest(raw_dir, tmp_path):
    manifest, out = _prepare(raw_dir, tmp_path)
    ds = load_prepared(out)
    assert [len(s.y) for s in (ds.train, ds.val, ds.test)] == [N_TRAIN - 10, 10, N_TEST]
    for s in (ds.train, ds.val, ds.test):
        assert s.x.dtype == torch.uint8 and s.y.dtype == torch.int64
        assert s.x.shape[1:] == (1, 32, 32)
        # zero padding: 2 pixels on each side around the 28x28 image
        assert s.x[:, :, :2].sum() == 0 and s.x[:, :, -2:].sum() == 0
        assert s.x[:, :, :, :2].sum() == 0 and s.x[:, :, :, -2:].sum() == 0
    train, val, test = _keys(ds.train.x), _keys(ds.val.x), _keys(ds.test.x)
    assert len(set(train)) == len(train) and len(set(val)) == len(val)
    assert not set(train) & set(val) and not set(test) & (set(train) | set(val))
    assert set(train) | set(val) == {(1, i) for i in range(N_TRAIN)}
    assert set(test) == {(2, i) for i in range(N_TEST)}
    # content and labels travel together
    raw = fake_images(N_TRAIN, 1)
    for img, y, (_, i) in zip(ds.train.x, ds.train.y, train):
        assert torch.equal(img[0, 2:30, 2:30], torch.from_numpy(raw[i]))
        assert y.item() == i % 10
    assert ds.in_chans == 1 and ds.image_size == 32 and ds.num_classes == 10
    assert manifest == json.loads((out / "manifest.json").read_text())
    for key in ("dataset", "source", "classes", "num_classes", "shape", "mean", "std", "split_seed",
                "train_indices_sha256", "val_indices_sha256", "splits"):
        assert key in manifest, key
    assert manifest["dataset"] == "fashion-mnist" and manifest["source"] == f"idx:{raw_dir}"
    assert manifest["classes"] == FASHION_CLASSES and manifest["shape"] == [1, 32, 32]
    assert manifest["split_seed"] == 0
    xf = ds.train.x.float() / 255
    assert manifest["mean"][0] == pytest.approx(xf.mean().item(), rel=1e-5)
    assert manifest["std"][0] == pytest.approx(xf.std().item(), rel=1e-4)
    for name, s in (("train", ds.train), ("val", ds.val), ("test", ds.test)):
        info = manifest["splits"][name]
        assert info["count"] == len(s.y) and sum(info["class_counts"]) == len(s.y)
        assert info["class_counts"] == torch.bincount(s.y, minlength=10).tolist()
        assert len(info["sha256"]) == 64


def test_prepare_is_deterministic_and_seeded(raw_dir, tmp_path):
    m1, _ = _prepare(raw_dir, tmp_path, "a", seed=0)
    m2, _ = _prepare(raw_dir, tmp_path, "b", seed=0)
    m3, out3 = _prepare(raw_dir, tmp_path, "c", seed=1)
    assert m1 == m2
    assert m3["val_indices_sha256"] != m1["val_indices_sha256"]
    assert load_prepared(out3).val.y.shape == (10,)


def test_prepare_limits(raw_dir, tmp_path):
    manifest, out = _prepare(raw_dir, tmp_path, train_limit=15, test_limit=5)
    assert [manifest["splits"][s]["count"] for s in ("train", "val", "test")] == [15, 10, 5]
    ds = load_prepared(out)
    assert not set(_keys(ds.train.x)) & set(_keys(ds.val.x))


def test_checksum_mismatch_is_detected(raw_dir, tmp_path):
    _, out = _prepare(raw_dir, tmp_path)
    path = out / "val.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # one byte of image data
    path.write_bytes(bytes(data))
    with pytest.raises(PWLError, match="checksum"):
        load_prepared(out)
    assert len(load_prepared(out, verify=False).val.y) == 10  # still loadable when not verifying


def test_missing_files(raw_dir, tmp_path):
    _, out = _prepare(raw_dir, tmp_path)
    (out / "test.safetensors").unlink()
    with pytest.raises(PWLError, match="missing"):
        load_prepared(out)
    (out / "manifest.json").unlink()
    with pytest.raises(PWLError, match="manifest.json missing"):
        load_prepared(out)
    with pytest.raises(PWLError, match="manifest.json missing"):
        load_prepared(tmp_path / "nowhere")


def test_raw_file_errors(raw_dir, tmp_path):
    cfg = DataConfig(root=str(tmp_path / "empty"), download=False, val_size=10)
    with pytest.raises(PWLError, match="not found"):
        prepare(cfg, 0, tmp_path / "p", tmp_path / "r")
    xi = raw_dir / FASHION_FILES["train"][0]
    good = gzip.decompress(xi.read_bytes())
    xi.write_bytes(gzip.compress(good[:-7]))
    with pytest.raises(PWLError, match="truncated"):
        _prepare(raw_dir, tmp_path)
    xi.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + good[4:]))  # float dtype code
    with pytest.raises(PWLError, match="not an IDX file of unsigned bytes"):
        _prepare(raw_dir, tmp_path)


def test_val_size_must_leave_training_images():
    with pytest.raises(PWLError, match="leaves no training images"):
        split_train_val(10, 10, 0, 0)
    tr, va = split_train_val(10, 3, 0, 0)
    assert len(tr) == 7 and len(va) == 3 and not set(tr.tolist()) & set(va.tolist())
    assert tr.tolist() == sorted(tr.tolist())


def test_pad_to():
    x = torch.ones(2, 1, 28, 28, dtype=torch.uint8)
    p = pad_to(x, 32)
    assert p.shape == (2, 1, 32, 32) and p.sum() == x.sum() and torch.equal(p[..., 2:30, 2:30], x)
    assert pad_to(x, 28) is x
    with pytest.raises(PWLError, match="larger than data.image_size"):
        pad_to(x, 16)


def test_normalizer():
    norm = Normalizer([0.5], [0.25])
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
    assert norm(x).flatten().tolist() == pytest.approx([-2.0, 2.0])
    assert torch.equal(norm(x), norm(x.float() / 255))


# ------------------------------------------------------------------ augmentation and batches

def test_augment_keeps_shape_and_dtype():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16)
    out = augment(x, AugmentConfig(crop_pad_frac=0.125, flip=True, rotate_deg=15))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, x)
    assert torch.equal(augment(x, AugmentConfig(crop_pad_frac=0, flip=False, rotate_deg=0)), x)


def test_flip_only_augment_flips_or_keeps_each_image():
    torch.manual_seed(0)
    x = torch.rand(32, 1, 8, 8)
    torch.manual_seed(1)
    out = augment(x, AugmentConfig(crop_pad_frac=0, flip=True, rotate_deg=0))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image exactly one of the two
    assert any(flipped) and any(kept)
    torch.manual_seed(1)
    assert torch.equal(augment(x, AugmentConfig(crop_pad_frac=0, flip=True, rotate_deg=0)), out)  # seeded


def test_crop_only_augment_is_a_shifted_window():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    out = augment(x, AugmentConfig(crop_pad_frac=0.25, flip=False, rotate_deg=0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for o, p in zip(out, padded):
        assert any(torch.equal(o, p[:, dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5))


def test_batches_drop_last_and_normalise():
    x = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(10)
    b = Batches(Split(x, y), 4, Normalizer([0.0], [1.0]), None)
    assert len(b) == 2
    got = list(b)
    assert len(got) == 2 and all(xb.shape == (4, 1, 4, 4) and xb.dtype == torch.float32 for xb, _ in got)
    seen = torch.cat([yb for _, yb in got])
    assert len(set(seen.tolist())) == 8
    for xb, yb in got:
        assert torch.allclose(xb, x[yb].float() / 255)
    assert len(Batches(Split(x, y), 64, Normalizer([0.0], [1.0]), None)) == 1  # batch capped at the split size
