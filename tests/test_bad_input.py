"""Bad input that used to get through (issue 13): non-finite training, 16-bit images, hand-edited manifests,
silent dataset quirks, failed writes, and results that depend on the machine without saying so."""
import errno
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import PAIRS, make_mixed
from pwl import finite
from pwl.atomic import atomic_write
from pwl.config import DataConfig, OptimConfig
from pwl.data import load_prepared, prepare
from pwl.env import environment, machine, resume_mismatch
from pwl.errors import PWLError
from pwl.models import parse_model_config
from pwl.runtime import export_pack, model_configs, read_orders, write_orders
from pwl.runtime.export import ORDERS_FILE
from pwl.states import prefix_order
from pwl.train import Trainee, TrainingRun, fit
from test_data import prepare_fake
from test_train import AUG, NORM1, fit_plain, same_state, tiny_net, tiny_split

# ------------------------------------------------------------------ non-finite training


def nan_at(model, when: tuple[int, int], grad_only: bool = False):
    """A loss_fn that goes non-finite at (epoch, step) (1-based; 4 steps per epoch in fit_plain): the loss
    itself, or only its gradient (sqrt'(0) = inf, times 0 = nan, while sqrt(0) = 0 keeps the loss finite)."""
    calls = []

    def loss_fn(x, y, progress):
        calls.append(1)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if (1 + (len(calls) - 1) // 4, 1 + (len(calls) - 1) % 4) == when:
            w = next(model.parameters())
            loss = loss + (w.abs() * 0).sqrt().sum() if grad_only else loss * float("nan")
        return loss, {}, logits
    return loss_fn


def fit_with(loss_factory, ckpt, epochs=2):
    """fit_plain's tiny classifier and data, with the loss `loss_factory(model)`."""
    model = tiny_net()
    optim = OptimConfig(lr=0.05, epochs=epochs, batch_size=8)
    return fit(Trainee(model, [{"params": list(model.parameters())}], loss_factory(model), lambda: {"score": 0.0}),
               TrainingRun(train=tiny_split(), norm=NORM1, optim=optim, augment=AUG, checkpoint=ckpt,
                           fingerprint="fp", seed=0, desc="test"))


@pytest.mark.parametrize("grad_only", [False, True], ids=["loss", "gradient"])
def test_training_stops_at_the_first_non_finite_step(tmp_path, grad_only):
    ckpt = tmp_path / "run.pt"
    with pytest.raises(PWLError) as err:
        fit_with(lambda m: nan_at(m, (2, 3), grad_only), ckpt)
    msg = str(err.value)
    assert ("non-finite gradient" if grad_only else "non-finite loss (nan)") in msg
    assert "at epoch 2, step 3 of 4" in msg and "resume checkpoint of epoch 1 is kept" in msg, msg
    ck = torch.load(ckpt, weights_only=False)
    assert ck["epoch"] == 1 and all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_non_finite_in_the_first_epoch_writes_no_checkpoint(tmp_path):
    with pytest.raises(PWLError, match="epoch 1, step 1 of 4.*no epoch had finished"):
        fit_with(lambda m: nan_at(m, (1, 1)), tmp_path / "run.pt")
    assert not (tmp_path / "run.pt").exists()


def test_deferred_checks_name_the_same_step(tmp_path):
    """On a GPU the guard checks in batches; it still names the first bad step and stops before the epoch
    is scored or saved."""
    orig = finite.FiniteGuard.__init__

    def every_3(self, *a, **kw):
        orig(self, *a, **{**kw, "every": 3})
    finite.FiniteGuard.__init__ = every_3
    try:
        with pytest.raises(PWLError, match="epoch 2, step 2 of 4"):
            fit_with(lambda m: nan_at(m, (2, 2)), tmp_path / "run.pt")
    finally:
        finite.FiniteGuard.__init__ = orig
    assert torch.load(tmp_path / "run.pt", weights_only=False)["epoch"] == 1


def test_guard_changes_nothing_in_a_finite_run(tmp_path, monkeypatch):
    guarded, plain = tiny_net(), tiny_net()
    fit_plain(guarded, tmp_path / "a.pt")
    monkeypatch.setattr(finite.FiniteGuard, "step", lambda self, *a: None)
    monkeypatch.setattr(finite.FiniteGuard, "flush", lambda self: None)
    fit_plain(plain, tmp_path / "b.pt")
    assert same_state(guarded.state_dict(), plain.state_dict())


def test_stage_names():
    assert finite.stage_name("vgg/teacher") == "train_teacher@vgg (vgg/teacher)"
    assert finite.stage_name("vit/pwl").startswith("distill@vit") and finite.stage_name("test") == "test"


# ------------------------------------------------------------------ machine: threads and CPU kernels

def test_machine_is_recorded():
    m = machine()
    assert m["threads"] == torch.get_num_threads() and m["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert m["cpu_model"] and m["cpu_isa"] and "gpu" in m
    env = environment()
    assert {"cpu_model", "cpu_capability", "gpu", "torch_threads"} <= set(env)


def test_resume_on_another_setup_restarts(tmp_path, capsys):
    ckpt = tmp_path / "run.pt"
    fit_plain(tiny_net(), ckpt)
    ck = torch.load(ckpt, weights_only=False)
    assert ck["machine"] == machine() and resume_mismatch(ck["machine"]) is None
    for edit, needle in (({**ck["machine"], "threads": 99}, "threads 99 there"),
                         ({**ck["machine"], "cpu_capability": "AVX2" if machine()["cpu_capability"] != "AVX2"
                           else "AVX512"}, "cpu_capability"),
                         ({**ck["machine"], "cpu_isa": "avx2 fma zz_isa"}, "cpu_isa: only there ['zz_isa']"),
                         (None, "records no thread count")):
        torch.save({**ck, "machine": edit}, ckpt)
        res = fit_plain(tiny_net(), ckpt)
        out = capsys.readouterr().out
        assert res.resumed_from == 0 and "not resuming" in out and needle in out and "from scratch" in out, out
        assert torch.load(ckpt, weights_only=False)["machine"] == machine()


# ------------------------------------------------------------------ 16-bit images, hidden files, silent quirks

def png16(path: Path, a: np.ndarray) -> None:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB): grey (H, W) or RGB (H, W, 3) uint16."""
    h, w = a.shape[:2]
    colour = 0 if a.ndim == 2 else 2
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def deep_root(tmp_path):
    """16-bit grey and RGB PNGs (values across the whole 0..65535 range), 2 classes; the hand-made reference
    is each value's high byte: 65535 -> 255, 257 * v -> v, as Pillow reads 16-bit RGB."""
    rng = np.random.default_rng(0)
    root, ref = tmp_path / "deep", {}
    for split, n in (("train", 3), ("test", 1)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                grey, rgb = rng.integers(0, 65536, (8, 8), dtype=np.uint16), rng.integers(0, 65536, (8, 8, 3),
                                                                                           dtype=np.uint16)
                grey[0, :3] = (0, 257 * 200, 65535)
                png16(root / split / c / f"{i}g.png", grey)
                png16(root / split / c / f"{i}rgb.png", rgb)
                ref[(split, c, i, "g")], ref[(split, c, i, "rgb")] = grey >> 8, (rgb >> 8).transpose(2, 0, 1)
    return root, ref


def test_16bit_grey_and_rgb_are_rescaled_not_clipped(deep_root, tmp_path):
    root, ref = deep_root
    assert Image.open(root / "test" / "a" / "0g.png").mode.startswith("I")  # really 16-bit grey
    cfg = DataConfig(dataset="imagefolder", root=str(root), val_size=1, image_size=8, resize=False)
    manifest = prepare(cfg, 0, tmp_path / "p", tmp_path / "raw")
    x = load_prepared(tmp_path / "p").test.x  # test: a/0g, a/0rgb, b/0g, b/0rgb (sorted)
    for k, (c, kind) in enumerate([("a", "g"), ("a", "rgb"), ("b", "g"), ("b", "rgb")]):
        want = np.broadcast_to(ref[("test", c, 0, kind)], (3, 8, 8))  # grey -> RGB repeats the channel
        assert np.array_equal(x[k].numpy(), want), (c, kind)
    assert x[0, 0, 0, :3].tolist() == [0, 200, 255]
    assert 0.3 < manifest["mean"][0] < 0.7  # the clipped data had mean 0.999
    grey = prepare(cfg.model_copy(update={"channels": 1}), 0, tmp_path / "g", tmp_path / "raw")
    assert grey["shape"] == [1, 8, 8]
    assert np.array_equal(load_prepared(tmp_path / "g").test.x[0, 0].numpy(), ref[("test", "a", 0, "g")])


def test_hidden_files_skipped_and_silent_cases_warned(deep_root, tmp_path, capsys):
    root, _ = deep_root
    (root / "train" / "a" / "._0g.png").write_bytes(b"macOS resource fork, not a PNG")
    (root / "train" / ".cache").mkdir()
    os.symlink("loop", root / "train" / "loop")  # a class folder lost to a symlink loop
    for f in (root / "test" / "b").iterdir():
        f.unlink()  # class b: train images, no test images
    cfg = DataConfig(dataset="imagefolder", root=str(root), val_size=1, image_size=8, resize=False)
    manifest = prepare(cfg, 0, tmp_path / "p", tmp_path / "raw")
    err = capsys.readouterr().err
    assert manifest["classes"] == ["a", "b"] and manifest["splits"]["test"]["class_counts"] == [2, 0]
    assert f"warning: imagefolder: skipped {root / 'train' / 'loop'} (a broken or looping symlink)" in err, err
    assert "warning: class(es) b have no images in the test split" in err
    assert "._0g" not in err and ".cache" not in err


# ------------------------------------------------------------------ the prepared-data manifest

@pytest.fixture
def prepared(tmp_path):
    return prepare_fake(tmp_path)


def _edit_json(path: Path, fn):
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


@pytest.mark.parametrize("damage,needle", [
    (lambda p: p.write_text(p.read_text()[:40]), "is unreadable or corrupt (JSONDecodeError"),
    (lambda p: _edit_json(p, lambda d: d["splits"].pop("val")), "splits.val: Field required"),
    (lambda p: _edit_json(p, lambda d: d.pop("mean")), "mean: Field required"),
    (lambda p: _edit_json(p, lambda d: d.update(num_classes=3)), "num_classes is 3 but 10 classes"),
    (lambda p: _edit_json(p, lambda d: d["splits"]["train"].update(count="30")), "splits.train.count"),
    (lambda p: _edit_json(p, lambda d: d["splits"]["test"].update(file="../../etc/passwd")), "not a plain file"),
    (lambda p: _edit_json(p, lambda d: d.update(std=[float("nan")])), "std.0"),
    (lambda p: _edit_json(p, lambda d: d["splits"]["test"].update(count=11, class_counts=[2] + [1] * 9)),
     "holds x torch.uint8 [10, 1, 32, 32]"),
    (lambda p: _edit_json(p, lambda d: d["splits"]["test"].update(class_counts=[2, 0] + [1] * 8)),
     "labels do not match class_counts"),
    (lambda p: p.write_text("[1, 2]"), "Input should be a valid dictionary"),
], ids=["truncated", "no-val", "no-mean", "num-classes", "count-as-string", "path-escape", "nan-std",
        "count-vs-file", "class-counts", "not-an-object"])
def test_prepared_manifest_damage_is_one_clear_error(prepared, damage, needle):
    path = prepared / "manifest.json"
    damage(path)
    with pytest.raises(PWLError) as err:
        load_prepared(prepared, verify=False)
    assert str(prepared) in str(err.value) and needle in str(err.value), str(err.value)  # names the file
    assert "dvc repro -f prepare" in str(err.value)


def test_prepare_writes_atomically_and_cleans_up_on_failure(prepared, tmp_path, monkeypatch):
    assert sorted(p.name for p in prepared.iterdir()) == ["manifest.json", "test.safetensors", "train.safetensors",
                                                          "val.safetensors"]
    import pwl.data

    def disk_full(tensors, path):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pwl.data, "save_file", disk_full)
    with pytest.raises(PWLError, match=f"could not write {prepared / 'train.safetensors'}: .*No space left"):
        prepare(DataConfig(root=str(tmp_path / "raw"), download=False, val_size=10), 0, prepared, tmp_path / "u")
    assert not list(prepared.glob("*.tmp")) and not (prepared / "manifest.json").exists()


def test_atomic_write_removes_its_tmp_on_failure(tmp_path):
    target = tmp_path / "sub" / "f.json"
    atomic_write(target, b"old")

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(PWLError, match="could not write .*f.json: .*No space left.*\n  how to fix: free disk space"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old" and [p.name for p in target.parent.iterdir()] == ["f.json"]

    def bug(tmp):
        tmp.write_bytes(b"half")
        raise ValueError("not a disk problem")
    with pytest.raises(ValueError):  # other errors propagate unchanged, and leave nothing either
        atomic_write(target, bug)
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


# ------------------------------------------------------------------ the loading orders beside the pack

@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    tc, sc = (parse_model_config(PAIRS["vgg"][r]) for r in ("teacher", "student"))
    export_pack(make_mixed("vgg"), out, model_configs(tc, sc, 3, 5, 8))
    write_orders(out, 3, {"prefix": prefix_order(3)})
    return out


def _orders(fn):
    return lambda d: fn(d["orders"])


@pytest.mark.parametrize("edit,needle", [
    (lambda d: d.pop("orders"), "orders: Field required"),
    (_orders(lambda o: o.update(prefix=["XSS", "TSS", "TTS", "TTT"])), "orders.prefix: states ['XSS']"),
    (_orders(lambda o: o.update(prefix=["SSS", "TSS", "TTS"])), "does not add the teacher blocks 1..3"),
    (_orders(lambda o: o.update(prefix=["SSS", "TSS", "TSS", "TTS", "TTT"])), "does not add the teacher blocks"),
    (_orders(lambda o: o.update(prefix=["SSSS", "TSSS", "TTSS", "TTTS", "TTTT"])), "num_blocks is 3"),
    (lambda d: d.update(num_blocks="3"), "num_blocks: Input should be a valid integer"),
    (lambda d: d.update(files={}), "files: Extra inputs are not permitted"),
    (lambda d: d.update(format="pwl-shards/2"), "has format 'pwl-shards/2'"),
], ids=["no-orders", "letters", "short", "repeat", "length", "num-blocks", "extra", "format"])
def test_loading_orders_damage_is_one_clear_error(shards, tmp_path, edit, needle):
    d = tmp_path / "copy"
    d.mkdir()
    doc = json.loads((shards / ORDERS_FILE).read_text())
    edit(doc)
    (d / ORDERS_FILE).write_text(json.dumps(doc))
    with pytest.raises(PWLError) as err:
        read_orders(d)
    assert str(d / ORDERS_FILE) in str(err.value) and needle in str(err.value), str(err.value)


def test_loading_orders_a_stage_needs(shards):
    assert read_orders(shards, ("prefix",)) == {"prefix": prefix_order(3)}
    with pytest.raises(PWLError, match="lack best_val"):
        read_orders(shards, ("prefix", "best_val"))
