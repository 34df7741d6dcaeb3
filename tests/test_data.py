"""Dataset preparation from (fake) Fashion-MNIST IDX files, manifest checks, loading and augmentation."""
import gzip
import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from pwl.config import AugmentConfig, DataConfig
from pwl.data import (SPLITS, Batches, Normalizer, Split, augment, load_prepared, pad_to, prepare,
                      split_train_val)
from pwl.errors import PWLError
from pwl.profile import compose
from pwl.sources import FASHION_CLASSES, FASHION_FILES

REPO = Path(__file__).resolve().parents[1]
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


def write_fake_fashion(d, n_train: int = N_TRAIN, n_test: int = N_TEST):
    """A Fashion-MNIST folder (gzipped IDX files) of n_train / n_test fake images in `d` (created)."""
    d.mkdir()
    for split, n, tag in (("train", n_train, 1), ("test", n_test, 2)):
        xi, yi = FASHION_FILES[split]
        write_idx(d / xi, fake_images(n, tag))
        write_idx(d / yi, (np.arange(n) % 10).astype(np.uint8))
    return d


def prepare_fake(tmp_path):
    """data/prepared from a 40 + 10 image fake Fashion-MNIST (10 held out for validation); returns its folder."""
    raw = write_fake_fashion(tmp_path / "raw", 40, 10)
    out = tmp_path / "prepared"
    prepare(DataConfig(root=str(raw), download=False, val_size=10), 0, out, tmp_path / "unused")
    return out


@pytest.fixture
def raw_dir(tmp_path):
    return write_fake_fashion(tmp_path / "raw")


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
    got = list(b.epoch(seed=0))
    assert len(got) == 2 and all(xb.shape == (4, 1, 4, 4) and xb.dtype == torch.float32 for xb, _ in got)
    seen = torch.cat([yb for _, yb in got])
    assert len(set(seen.tolist())) == 8
    for xb, yb in got:
        assert torch.allclose(xb, x[yb].float() / 255)
    assert len(Batches(Split(x, y), 64, Normalizer([0.0], [1.0]), None)) == 1  # batch capped at the split size


# ------------------------------------------------------------------ CIFAR: torchvision's python-version folders

def cifar_images(n: int, first: int) -> np.ndarray:
    """n x 3072 channel-major rows; R at (0,0) holds a global index (first..first+n-1), the rest noise."""
    x = np.random.default_rng(first).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(first, first + n)
    return x.reshape(n, -1)


def dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root, per_batch=20):
    """torchvision's cifar-10-batches-py: data_batch_1..5, test_batch ({data, labels}), batches.meta."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for b in range(5):
        dump(d / f"data_batch_{b + 1}", {"batch_label": f"training batch {b + 1} of 5", "filenames": [],
                                         "data": cifar_images(per_batch, b * per_batch),
                                         "labels": [(b * per_batch + i) % 10 for i in range(per_batch)]})
    test = cifar_images(per_batch, 200)
    test[0] = planes().reshape(-1)
    dump(d / "test_batch", {"batch_label": "testing batch 1 of 1", "data": test,
                            "labels": [i % 10 for i in range(per_batch)]})
    dump(d / "batches.meta", {"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": per_batch})
    return d


def write_cifar100(root, n_train=100, n_test=20):
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    test = cifar_images(n_test, 200)
    test[0] = planes().reshape(-1)
    for name, data in (("train", cifar_images(n_train, 0)), ("test", test)):
        dump(d / name, {"data": data, "fine_labels": [(i * 7) % 100 for i in range(len(data))],
                        "coarse_labels": [i % 20 for i in range(len(data))]})
    dump(d / "meta", {"fine_label_names": [f"f{i:02d}" for i in range(100)],
                      "coarse_label_names": [f"g{i}" for i in range(20)]})
    return d


def planes() -> np.ndarray:
    """One 3x32x32 image whose R, G and B planes all differ (catches an HWC/CHW mix-up)."""
    r = (np.arange(1024) % 251).reshape(32, 32)
    return np.stack([r, 255 - r, np.full((32, 32), 7)]).astype(np.uint8)


def _cifar_prepare(tmp_path, dataset, root, **kw):
    cfg = DataConfig(dataset=dataset, root=None if root is None else str(root), download=False, val_size=10, **kw)
    out = tmp_path / f"prepared-{dataset}"
    return prepare(cfg, 0, out, tmp_path / "raw"), out


def _check_cifar(manifest, out, num_classes, rows, labels, source):
    """Counts, and every image back exactly (rows: the N x 3072 written) with its own label."""
    ds = load_prepared(out)
    n = len(rows)
    assert manifest["num_classes"] == num_classes and manifest["shape"] == [3, 32, 32]
    assert manifest["source"] == source
    assert [manifest["splits"][s]["count"] for s in SPLITS] == [n - 10, 10, 20]
    got = torch.cat([ds.train.x, ds.val.x])
    idx = got[:, 0, 0, 0].long()
    assert sorted(idx.tolist()) == list(range(n))  # every training image once, train/val disjoint
    assert torch.equal(got, torch.from_numpy(rows.reshape(n, 3, 32, 32))[idx])
    assert torch.equal(torch.cat([ds.train.y, ds.val.y]), torch.tensor(labels)[idx])
    x, img = ds.test.x[0], torch.from_numpy(planes())  # channel-major: plane c of the row is channel c
    assert torch.equal(x[0], img[0]) and torch.equal(x[1], img[1]) and torch.equal(x[2], img[2])
    assert ds.test.y.tolist() == labels[:20]  # the test files use the same label rule


def test_cifar10_folder_reads_exactly(tmp_path):
    d = write_cifar10(tmp_path / "src")
    manifest, out = _cifar_prepare(tmp_path, "cifar10", tmp_path / "src")
    rows = np.concatenate([cifar_images(20, b * 20) for b in range(5)])
    _check_cifar(manifest, out, 10, rows, [i % 10 for i in range(100)], f"cifar-python:{d}")
    assert manifest["classes"] == [f"c{i}" for i in range(10)]
    m2, _ = _cifar_prepare(tmp_path, "cifar10", d)  # data.root may also name the folder itself
    assert m2["splits"] == manifest["splits"]


def test_cifar100_folder_reads_exactly(tmp_path):
    d = write_cifar100(tmp_path / "src")
    manifest, out = _cifar_prepare(tmp_path, "cifar100", tmp_path / "src")
    _check_cifar(manifest, out, 100, cifar_images(100, 0), [(i * 7) % 100 for i in range(100)], f"cifar-python:{d}")
    assert manifest["classes"][:2] == ["f00", "f01"] and len(manifest["classes"]) == 100


def test_cifar_reads_the_raw_dir_when_root_is_null(tmp_path):
    d = write_cifar10(tmp_path / "raw")
    manifest, _ = _cifar_prepare(tmp_path, "cifar10", None)
    assert manifest["source"] == f"cifar-python:{d}"


@pytest.mark.parametrize("damage,needle", [
    (lambda d: (d / "data_batch_3").unlink(), "lacks data_batch_3"),
    (lambda d: (d / "batches.meta").unlink(), "lacks batches.meta"),
    (lambda d: (d / "test_batch").write_bytes((d / "test_batch").read_bytes()[:-100]), "test_batch is not a readable"),
    (lambda d: (d / "data_batch_2").write_bytes(b"garbage"), "data_batch_2 is not a readable"),
    (lambda d: dump(d / "data_batch_2", {"data": cifar_images(20, 0), "labels": [10] * 20}),
     "data_batch_2: labels span 10..10, outside 0..9"),
    (lambda d: dump(d / "data_batch_4", {"data": cifar_images(20, 0), "labels": [1] * 19}),
     "data_batch_4 holds 20 images but 19 labels"),
    (lambda d: dump(d / "data_batch_5", {"data": cifar_images(20, 0)[:, :-1], "labels": [1] * 20}),
     "data_batch_5: data is uint8 of 61420 values, not uint8 rows of 3072"),
    (lambda d: dump(d / "data_batch_1", {"data": cifar_images(20, 0)}), "data_batch_1: no usable 'labels'"),
    (lambda d: dump(d / "test_batch", [1, 2]), "test_batch is not a CIFAR batch"),
])
def test_cifar_damage_names_the_file(tmp_path, damage, needle):
    d = write_cifar10(tmp_path / "src")
    damage(d)
    with pytest.raises(PWLError, match="data.download: true") as err:
        _cifar_prepare(tmp_path, "cifar10", tmp_path / "src")
    assert needle in str(err.value) and str(d) in str(err.value)


def test_cifar_missing_offline_names_the_directory(tmp_path):
    with pytest.raises(PWLError) as err:
        _cifar_prepare(tmp_path, "cifar100", None)
    assert f"{tmp_path / 'raw' / 'cifar-100-python'} not found" in str(err.value)
    with pytest.raises(PWLError) as err:  # a data.root never triggers a download
        prepare(DataConfig(dataset="cifar10", root=str(tmp_path / "mine"), download=True), 0, tmp_path / "p",
                tmp_path / "raw")
    assert f"{tmp_path / 'mine' / 'cifar-10-batches-py'} not found" in str(err.value)


def test_cifar_download_is_torchvisions_reading_is_ours(tmp_path, monkeypatch):
    """With data.root null, torchvision only fetches the folder (stood in for here); our reader reads it."""
    import torchvision.datasets as tvd
    calls = []

    def fake_cifar10(root, train, download):
        calls.append((root, train, download))
        write_cifar10(Path(root))
    monkeypatch.setattr(tvd, "CIFAR10", fake_cifar10)
    cfg = DataConfig(dataset="cifar10", download=True, val_size=10)
    manifest = prepare(cfg, 0, tmp_path / "p", tmp_path / "raw")
    assert calls == [(str(tmp_path / "raw"), False, True)]
    assert manifest["source"] == f"torchvision-download:{tmp_path / 'raw' / 'cifar-10-batches-py'}"

    def offline(root, train, download):
        raise RuntimeError("network unreachable")
    monkeypatch.setattr(tvd, "CIFAR100", offline)
    with pytest.raises(PWLError, match="could not download cifar100 into .*network unreachable"):
        prepare(DataConfig(dataset="cifar100", download=True, val_size=10), 0, tmp_path / "p", tmp_path / "raw")


# ------------------------------------------------------------------ imagefolder

CLASSES = ["cat", "ant", "bee"]  # created unsorted; the dataset sorts them


def colour(c: str, i: int, split: str) -> tuple:
    """Distinct solid colour per image: R encodes the sorted class, G the index, B the split."""
    return (40 + 80 * sorted(CLASSES).index(c), 20 * i + 10, 50 if split == "train" else 200)


@pytest.fixture
def image_root(tmp_path):
    """root/{train,test}/<class>/: 6 train + 2 test solid 40x30 images per class, PNG and JPEG mixed."""
    root = tmp_path / "imgs"
    for split, n in (("train", 6), ("test", 2)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                ext = "png" if i % 2 == 0 else ("jpg" if i % 4 == 1 else "JPEG")
                Image.new("RGB", (40, 30), colour(c, i, split)).save(root / split / c / f"{i:02d}.{ext}")
    return root


def _folder(root, tmp_path, name="pf", **kw):
    cfg = DataConfig(dataset="imagefolder", root=str(root), val_size=3, **kw)
    return prepare(cfg, 0, tmp_path / name, tmp_path / "raw"), tmp_path / name


def test_test_limit_takes_a_seeded_subset_of_every_class(image_root, tmp_path):
    """An imagefolder's test files come sorted by class: the first 3 would all be 'ant'."""
    manifest, out = _folder(image_root, tmp_path, test_limit=3)
    ys = load_prepared(out).test.y.tolist()
    assert len(ys) == 3 and len(set(ys)) > 1 and ys == sorted(ys)
    again, _ = _folder(image_root, tmp_path, name="again", test_limit=3)
    assert again["splits"]["test"]["sha256"] == manifest["splits"]["test"]["sha256"]


def test_imagefolder_prepare(image_root, tmp_path):
    manifest, out = _folder(image_root, tmp_path)
    ds = load_prepared(out)
    assert manifest["classes"] == ["ant", "bee", "cat"] and manifest["num_classes"] == 3
    assert manifest["source"] == f"imagefolder:{image_root}" and manifest["shape"] == [3, 32, 32]
    assert [manifest["splits"][s]["count"] for s in SPLITS] == [15, 3, 6]
    assert manifest["splits"]["test"]["class_counts"] == [2, 2, 2]
    assert sum(manifest["splits"]["train"]["class_counts"]) + sum(manifest["splits"]["val"]["class_counts"]) == 18
    assert ds.test.y.tolist() == [0, 0, 1, 1, 2, 2]  # files sorted: class, then name
    for s in (ds.train, ds.val, ds.test):  # R encodes the class: labels travel with their images
        assert s.x.dtype == torch.uint8 and s.x.shape[1:] == (3, 32, 32)
        assert torch.equal(((s.x[:, 0, 16, 16].float() - 40) / 80).round().long(), s.y)
    for k, (c, i) in enumerate([(c, i) for c in sorted(CLASSES) for i in range(2)]):
        want = torch.tensor(colour(c, i, "test"), dtype=torch.uint8).view(3, 1, 1).expand(3, 32, 32)
        if i % 2 == 0:  # PNG: exactly the colour after the resize
            assert torch.equal(ds.test.x[k], want)
        else:  # JPEG: lossy
            assert (ds.test.x[k].int() - want.int()).abs().max() <= 3
    m2, _ = _folder(image_root, tmp_path, "pf2")
    assert m2 == manifest  # deterministic


def test_imagefolder_grayscale_and_padding(image_root, tmp_path):
    manifest, out = _folder(image_root, tmp_path, channels=1)
    ds = load_prepared(out)
    assert manifest["shape"] == [1, 32, 32] and ds.test.x.shape == (6, 1, 32, 32)
    grey = Image.new("RGB", (1, 1), colour("ant", 0, "test")).convert("L").getpixel((0, 0))
    assert torch.equal(ds.test.x[0], torch.full((1, 32, 32), grey, dtype=torch.uint8))
    manifest, out = _folder(image_root, tmp_path, "pad", resize=False, image_size=48)
    x = load_prepared(out).test.x
    assert manifest["shape"] == [3, 48, 48]
    inside = torch.zeros(48, 48, dtype=torch.bool)
    inside[9:39, 4:44] = True  # 40x30 centred in 48x48
    assert x[:, :, ~inside].sum() == 0
    want = torch.tensor(colour("ant", 0, "test"), dtype=torch.uint8).view(3, 1, 1).expand(3, 30, 40)
    assert torch.equal(x[0, :, 9:39, 4:44], want)
    with pytest.raises(PWLError, match="00.png is 40x30, larger than data.image_size=32"):
        _folder(image_root, tmp_path, "small", resize=False, image_size=32)


def test_imagefolder_errors(image_root, tmp_path):
    bad = image_root / "train" / "bee" / "03.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(PWLError, match=f"cannot decode image {bad}"):
        _folder(image_root, tmp_path)
    good = image_root / "train" / "bee" / "00.png"
    bad.write_bytes(good.read_bytes()[:60])  # truncated PNG
    with pytest.raises(PWLError, match="03.png"):
        _folder(image_root, tmp_path)
    bad.unlink()
    (image_root / "test" / "dog").mkdir()
    with pytest.raises(PWLError, match="has classes that train lacks: dog"):
        _folder(image_root, tmp_path)
    (image_root / "test" / "dog").rmdir()
    (image_root / "train" / "eel").mkdir()
    (image_root / "train" / "eel" / "notes.txt").write_text("no images")
    with pytest.raises(PWLError, match="train class folders without"):
        _folder(image_root, tmp_path)


def test_imagefolder_layout_errors(tmp_path):
    root = tmp_path / "empty"
    with pytest.raises(PWLError, match=f"{root / 'train'} is not a directory"):
        _folder(root, tmp_path)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    with pytest.raises(PWLError, match="has no class folders"):
        _folder(root, tmp_path)
    (root / "train" / "a").mkdir()
    Image.new("RGB", (8, 8)).save(root / "train" / "a" / "x.png")
    with pytest.raises(PWLError, match="has one class folder \\(a\\): a classifier needs at least 2 classes"):
        _folder(root, tmp_path)
    (root / "train" / "b").mkdir()
    Image.new("RGB", (8, 8)).save(root / "train" / "b" / "x.png")
    (root / "test" / "a").mkdir()  # empty test class folders are allowed, an empty test split is not
    with pytest.raises(PWLError, match=f"{root / 'test'} holds no"):
        _folder(root, tmp_path)


def test_imagefolder_prepare_stage(image_root, tmp_path):
    """The real stage script on an imagefolder: later stages only ever see data/prepared."""
    work = tmp_path / "work"
    work.mkdir()
    compose("smoke", out=work / "params.yaml", conf=REPO / "conf")
    raw = yaml.safe_load((work / "params.yaml").read_text())
    raw["data"].update(dataset="imagefolder", root=str(image_root), val_size=3, train_limit=0, test_limit=0)
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    res = subprocess.run([sys.executable, str(REPO / "stages" / "prepare.py")], cwd=work, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    ds = load_prepared(work / "data" / "prepared")
    assert ds.num_classes == 3 and ds.in_chans == 3 and len(ds.test.y) == 6
    metrics = json.loads((work / "reports" / "smoke" / "metrics" / "prepare.json").read_text())
    assert metrics["dataset"] == "imagefolder" and metrics["train"] == 15
