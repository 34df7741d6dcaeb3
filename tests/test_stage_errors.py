"""Bad input at the stage level: each stage stops before work with exit status 2, a message that says what is
wrong and how to fix it, no traceback, and no output written."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pwl.profile import compose
from test_data import FASHION_FILES, fake_images, write_idx  # noqa: F401  (shared fake-dataset writers)

REPO = Path(__file__).resolve().parents[1]


def fake_fashion(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for split, n, tag in (("train", 300, 1), ("test", 50, 2)):
        xi, yi = FASHION_FILES[split]
        write_idx(d / xi, fake_images(n, tag))
        write_idx(d / yi, (fake_images(n, tag)[:, 5, 5] % 10))
    return d


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working directory with smoke params and a prepared (fake) Fashion-MNIST, nothing else."""
    work = tmp_path_factory.mktemp("stage_errors")
    params = compose("smoke", out=work / "params.yaml", conf=REPO / "conf")
    raw = yaml.safe_load((work / "params.yaml").read_text())
    raw["data"].update(root=str(fake_fashion(work / "raw")), val_size=50, train_limit=0, test_limit=0)
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    assert params.profile == "smoke"
    res = run_stage(work, "prepare.py")
    assert res.returncode == 0, res.stderr
    return work


def run_stage(work: Path, script: str, *args, params: dict | None = None):
    cmd = [sys.executable, str(REPO / "stages" / script), *args]
    if params is not None:
        (work / "bad.yaml").write_text(yaml.safe_dump(params))
        cmd += ["--params", "bad.yaml"]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)


def edited(work: Path, *edits):
    """params.yaml with `(dotted.path, value)` edits applied (a single edit may be passed flat)."""
    raw = yaml.safe_load((work / "params.yaml").read_text())
    pairs = [edits] if isinstance(edits[0], str) else edits
    for path, value in pairs:
        node = raw
        *parents, leaf = path.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return raw


CASES = [
    # (id, script, args, params edit or None, expected message part)
    ("unknown-arch", "train.py", ["--arch", "nope", "--seed", "0", "--role", "teacher"], None, "unknown arch 'nope'"),
    ("seed-not-a-replica", "train.py", ["--arch", "vgg", "--seed", "7", "--role", "teacher"], None,
     "--seed 7 is not one of seeds [0]"),
    ("zero-lr", "train.py", ["--arch", "vgg", "--seed", "0", "--role", "teacher"], ("arch.vgg.train_teacher.lr", 0),
     "arch.vgg.train_teacher.lr: Input should be greater than 0"),
    ("zero-epochs", "train.py", ["--arch", "vgg", "--seed", "0", "--role", "student"], ("arch.vgg.train_student.epochs", 0),
     "arch.vgg.train_student.epochs: Input should be greater than 0"),
    ("unknown-family", "train.py", ["--arch", "vgg", "--seed", "0", "--role", "teacher"],
     ("arch.vgg.teacher", {"family": "mlp"}), "unknown architecture family 'mlp'"),
    ("student-wider", "distill.py", ["--arch", "vgg", "--seed", "0"],
     ("arch.vgg.student.widths", [64, 8, 16, 16, 16]), "student is wider than the teacher at block(s) [1]"),
    ("block-mismatch", "distill.py", ["--arch", "resnet", "--seed", "0"],
     ("arch.resnet.student.depths", [1, 1, 1]), "widths has 4 entries but depths has 3"),
    ("alpha-range", "distill.py", ["--arch", "vgg", "--seed", "0"], ("arch.vgg.distill.loss.alpha", 1.5),
     "Input should be less than or equal to 1"),
    ("bad-cross-mode", "distill.py", ["--arch", "vgg", "--seed", "0"], ("arch.vgg.distill.loss.cross_mode", "every"),
     "cross_mode: Input should be 'random', 'all'"),
    ("vit-patch-pairing", "train.py", ["--arch", "vit", "--seed", "0", "--role", "teacher"], ("arch.vit.teacher.patch_size", 4),
     "vit teacher and student need the same patch_size"),
    ("vit-patch-size", "train.py", ["--arch", "vit", "--seed", "0", "--role", "teacher"],
     (("arch.vit.teacher.patch_size", 5), ("arch.vit.student.patch_size", 5)),
     "input size 32 is not divisible by patch_size 5"),
    ("unknown-dataset", "prepare.py", [], ("data.dataset", "mnist"), "data.dataset: Input should be"),
    ("zero-bandwidth", "loadsim.py", ["--arch", "vgg", "--device", "sdcard"],
     ("loadsim.devices.sdcard.read_bandwidth", 0), "read_bandwidth"),
    ("unknown-device", "loadsim.py", ["--arch", "vgg", "--device", "floppy"], None, "unknown device profile 'floppy'"),
    ("teacher-missing", "distill.py", ["--arch", "vgg", "--seed", "0"], None, "checkpoint models/vgg/s0/teacher.safetensors is missing"),
    # issue 13: every float finite, bounds where a value becomes a sleep, a size or a count
    ("inf-w_sync", "distill.py", ["--arch", "vgg", "--seed", "0"], ("arch.vgg.distill.loss.w_sync", float("inf")),
     "arch.vgg.distill.loss.w_sync: Input should be a finite number"),
    ("inf-lr", "train.py", ["--arch", "vgg", "--seed", "0", "--role", "teacher"], ("arch.vgg.train_teacher.lr", float("inf")),
     "arch.vgg.train_teacher.lr: Input should be a finite number"),
    ("inf-latency", "loadsim.py", ["--arch", "vgg", "--device", "sdcard"],
     ("loadsim.devices.sdcard.open_latency_s", float("inf")), "open_latency_s: Input should be a finite number"),
    ("huge-latency", "loadsim.py", ["--arch", "vgg", "--device", "sdcard"],
     ("loadsim.devices.sdcard.open_latency_s", 1e9), "open_latency_s: Input should be less than or equal to 10"),
    ("huge-seed", "prepare.py", [], ("seed", 10 ** 20), "seed: Input should be less than or equal to 4294967295"),
    ("family-list", "train.py", ["--arch", "vgg", "--seed", "0", "--role", "teacher"], ("arch.vgg.teacher.family", ["vgg"]),
     "unknown architecture family ['vgg']"),
    ("zero-heads", "train.py", ["--arch", "vit", "--seed", "0", "--role", "teacher"], ("arch.vit.teacher.heads", 0),
     "heads 0: sizes and counts must be integers from 1"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_stops_before_work(workdir, case):
    _, script, args, edit, message = case
    params = edited(workdir, *edit) if edit else None
    res = run_stage(workdir, script, *args, params=params)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "how to fix" in res.stderr and "Traceback" not in res.stderr
    assert not (workdir / "models").exists() and not (workdir / "checkpoints").exists()


def test_corrupt_teacher_checkpoint(workdir, tmp_path):
    teacher = workdir / "models" / "vgg" / "s0" / "teacher.safetensors"
    teacher.parent.mkdir(parents=True)
    try:
        teacher.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
        res = run_stage(workdir, "distill.py", "--arch", "vgg", "--seed", "0")
        assert res.returncode == 2 and "is corrupt or truncated" in res.stderr, res.stderr
        assert not (workdir / "models" / "vgg" / "s0" / "pwl.safetensors").exists()
    finally:
        shutil.rmtree(workdir / "models")


def test_missing_dataset(tmp_path):
    compose("smoke", out=tmp_path / "params.yaml", conf=REPO / "conf")
    res = run_stage(tmp_path, "train.py", "--arch", "vgg", "--seed", "0", "--role", "teacher")
    assert res.returncode == 2 and "no prepared dataset" in res.stderr and "dvc repro prepare" in res.stderr
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["data"].update(root=str(tmp_path / "empty"), download=False)
    res = run_stage(tmp_path, "prepare.py", params=raw)
    assert res.returncode == 2 and "Fashion-MNIST IDX files not found" in res.stderr
    assert not (tmp_path / "data" / "prepared" / "manifest.json").exists()


# ------------------------------------------------------------------ issue 13: bad input that used to get through

def _restoring(path: Path):
    """Context: `path` (a file of the shared workdir) is put back as it was, whatever the test did to it."""
    import contextlib
    original = path.read_bytes()

    @contextlib.contextmanager
    def ctx():
        try:
            yield path
        finally:
            path.write_bytes(original)
    return ctx()


def test_non_finite_training_stops_with_nothing_written(workdir):
    """lr 1e38: the second step's loss is NaN (the table's w_sync=inf and cross_mode=random cases: training
    went on with NaN and wrote NaN weights and metrics with exit 0)."""
    res = run_stage(workdir, "train.py", "--arch", "vgg", "--seed", "0", "--role", "teacher",
                    params=edited(workdir, "arch.vgg.train_teacher.lr", 1e38))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "train_teacher@vgg (vgg/teacher): non-finite" in res.stderr and "at epoch 1, step " in res.stderr
    assert "no weights or metrics written" in res.stderr and "how to fix" in res.stderr
    assert not (workdir / "models").exists() and not (workdir / "checkpoints").exists()
    assert not (workdir / "reports" / "smoke" / "metrics" / "vgg" / "s0" / "teacher.json").exists()


@pytest.mark.parametrize("damage,needle", [
    (lambda p: p.write_text(p.read_text()[:100]), "is unreadable or corrupt (JSONDecodeError"),
    (lambda p: p.write_text(p.read_text().replace('"val"', '"validation"')), "splits.val: Field required"),
], ids=["truncated", "no-val-split"])
def test_damaged_prepared_manifest(workdir, damage, needle):
    with _restoring(workdir / "data" / "prepared" / "manifest.json") as path:
        damage(path)
        res = run_stage(workdir, "train.py", "--arch", "vgg", "--seed", "0", "--role", "teacher")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"prepared-data manifest {Path('data/prepared/manifest.json')}" in res.stderr and needle in res.stderr
    assert not (workdir / "models").exists()


def _export_untrained_shards(work: Path) -> Path:
    """The vgg pack of the smoke params, from untrained weights, and its loading orders: valid orders to damage."""
    from pwl.mixing import build_mixed
    from pwl.config import load_params
    from pwl.data import load_prepared
    from pwl.runtime import export_pack, model_configs, write_orders
    from pwl.runtime.export import ORDERS_FILE
    from pwl.states import prefix_order
    cfg, ds = load_params(work / "params.yaml").for_arch("vgg"), load_prepared(work / "data" / "prepared")
    out = work / "models" / "vgg" / "shards"
    n = cfg.teacher.num_blocks
    export_pack(build_mixed(cfg, ds), out, model_configs(cfg.teacher, cfg.student, ds.in_chans, ds.num_classes,
                                                         ds.image_size))
    write_orders(out, n, {"prefix": prefix_order(n), "value_sdcard": prefix_order(n)})
    return out / ORDERS_FILE


@pytest.mark.parametrize("edit,needle", [
    (lambda d: d.pop("orders"), "orders: Field required"),
    (lambda d: d.update(num_blocks=0), "num_blocks: Input should be greater than or equal to 1"),
    (lambda d: d["orders"].update(prefix=["XSSSS", "TSSSS", "TTSSS", "TTTSS", "TTTTS", "TTTTT"]),
     "orders.prefix: states ['XSSSS'] are not 5 letters S/T"),
], ids=["no-orders", "num-blocks", "XSSSS"])
def test_damaged_loading_orders(workdir, edit, needle):
    import json
    try:
        path = _export_untrained_shards(workdir)
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))
        res = run_stage(workdir, "loadsim.py", "--arch", "vgg", "--device", "sdcard")
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert f"loading orders {Path('models/vgg/shards/orders.json')} is invalid" in res.stderr
        assert needle in res.stderr and "how to fix" in res.stderr
        assert not (workdir / "reports" / "smoke" / "loadsim").exists()
    finally:
        shutil.rmtree(workdir / "models", ignore_errors=True)


@pytest.mark.parametrize("override,needle", [
    ("arch.vgg.train_teacher.epochs=abc", "arch.vgg.train_teacher.epochs: Input should be a valid integer"),
    ("arch.vgg.train_teacher.epoch=3", "Could not override 'arch.vgg.train_teacher.epoch'. Key 'epoch' is not in"),
    ("seed==", "Error parsing override 'seed=='"),
    ("arch.vgg.distill.loss.w_sync=inf", "w_sync: Input should be a finite number"),
])
def test_profile_validates_before_writing(tmp_path, override, needle):
    import shutil
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    (tmp_path / "params.yaml").write_text("untouched\n")
    res = subprocess.run([sys.executable, "-m", "pwl.profile", "smoke", override], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert (tmp_path / "params.yaml").read_text() == "untouched\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conf", "params.yaml"]  # no temporary file left


def test_profile_cli_writes_valid_params(tmp_path):
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    res = subprocess.run([sys.executable, "-m", "pwl.profile", "smoke", "seed=7"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["seed"] == 7


def test_every_training_stage_depends_on_threads():
    """threads 1 vs 0 gave other ResNet weights, but no stage depended on it: DVC did not notice."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in ("train_teacher", "train_student", "distill", "kd"):
        assert "threads" in stages[name]["params"], name


def test_16bit_and_quirky_imagefolder_prepares_right_pixels_with_warnings(tmp_path):
    """16-bit PNGs used to be clipped to 0/255 (manifest mean 0.999) with exit 0; hidden files were read as
    images; a class lost to a symlink loop or missing from test went unsaid."""
    import json
    import os

    import numpy as np
    from test_bad_input import png16
    root = tmp_path / "imgs"
    rng = np.random.default_rng(1)
    for split, n in (("train", 4), ("test", 2)):
        for c in ("a", "b"):
            if split == "test" and c == "b":
                continue
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                png16(root / split / c / f"{i}.png", rng.integers(0, 65536, (32, 32), dtype=np.uint16))
    (root / "train" / "a" / "._0.png").write_bytes(b"resource fork")
    os.symlink("loop", root / "train" / "loop")
    compose("smoke", out=tmp_path / "params.yaml", conf=REPO / "conf")
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["data"].update(dataset="imagefolder", root=str(root), val_size=1, image_size=32, resize=False, channels=1)
    res = run_stage(tmp_path, "prepare.py", params=raw)
    assert res.returncode == 0, res.stderr
    assert "warning: imagefolder: skipped" in res.stderr and "looping symlink" in res.stderr
    assert "warning: class(es) b have no images in the test split" in res.stderr
    manifest = json.loads((tmp_path / "data" / "prepared" / "manifest.json").read_text())
    assert manifest["classes"] == ["a", "b"] and 0.35 < manifest["mean"][0] < 0.65  # clipped: 0.999


def test_disk_full_leaves_no_tmp_and_names_the_file(tmp_path, workdir):
    """A write that fails (here: a file size limit, as a full disk) is exit 2 naming the file, and leaves
    no `.tmp` behind."""
    import resource
    import signal
    import shutil
    shutil.copy(workdir / "params.yaml", tmp_path / "params.yaml")

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
    res = subprocess.run([sys.executable, str(REPO / "stages" / "prepare.py")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, preexec_fn=small_files)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "could not write data/prepared/train.safetensors" in res.stderr and "free disk space" in res.stderr
    assert not list((tmp_path / "data" / "prepared").glob("*.tmp"))
    assert not (tmp_path / "data" / "prepared" / "manifest.json").exists()
