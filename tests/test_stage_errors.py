"""Bad input at the stage level: each stage stops before work with exit status 2, a message that says what is
wrong and how to fix it, no traceback, and no output written."""
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
    ("unknown-arch", "train.py", ["--arch", "nope", "--role", "teacher"], None, "unknown arch 'nope'"),
    ("zero-lr", "train.py", ["--arch", "vgg", "--role", "teacher"], ("arch.vgg.train_teacher.lr", 0),
     "arch.vgg.train_teacher.lr: Input should be greater than 0"),
    ("zero-epochs", "train.py", ["--arch", "vgg", "--role", "student"], ("arch.vgg.train_student.epochs", 0),
     "arch.vgg.train_student.epochs: Input should be greater than 0"),
    ("unknown-family", "train.py", ["--arch", "vgg", "--role", "teacher"],
     ("arch.vgg.teacher", {"family": "mlp"}), "unknown architecture family 'mlp'"),
    ("student-wider", "distill.py", ["--arch", "vgg"],
     ("arch.vgg.student.widths", [64, 8, 16, 16, 16]), "student is wider than the teacher at block(s) [1]"),
    ("block-mismatch", "distill.py", ["--arch", "resnet"],
     ("arch.resnet.student.depths", [1, 1, 1]), "widths has 4 entries but depths has 3"),
    ("alpha-range", "distill.py", ["--arch", "vgg"], ("arch.vgg.distill.loss.alpha", 1.5),
     "Input should be less than or equal to 1"),
    ("bad-cross-mode", "distill.py", ["--arch", "vgg"], ("arch.vgg.distill.loss.cross_mode", "every"),
     "cross_mode: Input should be 'random' or 'all'"),
    ("vit-patch-pairing", "train.py", ["--arch", "vit", "--role", "teacher"], ("arch.vit.teacher.patch_size", 4),
     "vit teacher and student need the same patch_size"),
    ("vit-patch-size", "train.py", ["--arch", "vit", "--role", "teacher"],
     (("arch.vit.teacher.patch_size", 5), ("arch.vit.student.patch_size", 5)),
     "input size 32 is not divisible by patch_size 5"),
    ("unknown-dataset", "prepare.py", [], ("data.dataset", "mnist"), "data.dataset: Input should be"),
    ("zero-bandwidth", "loadsim.py", ["--arch", "vgg", "--device", "sdcard"],
     ("loadsim.devices.sdcard.read_bandwidth", 0), "read_bandwidth"),
    ("unknown-device", "loadsim.py", ["--arch", "vgg", "--device", "floppy"], None, "unknown device profile 'floppy'"),
    ("teacher-missing", "distill.py", ["--arch", "vgg"], None, "checkpoint models/vgg/teacher.safetensors is missing"),
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
    teacher = workdir / "models" / "vgg" / "teacher.safetensors"
    teacher.parent.mkdir(parents=True)
    try:
        teacher.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
        res = run_stage(workdir, "distill.py", "--arch", "vgg")
        assert res.returncode == 2 and "is corrupt or truncated" in res.stderr, res.stderr
        assert not (workdir / "models" / "vgg" / "pwl.safetensors").exists()
    finally:
        teacher.unlink()
        teacher.parent.rmdir()
        (workdir / "models").rmdir()


def test_missing_dataset(tmp_path):
    compose("smoke", out=tmp_path / "params.yaml", conf=REPO / "conf")
    res = run_stage(tmp_path, "train.py", "--arch", "vgg", "--role", "teacher")
    assert res.returncode == 2 and "no prepared dataset" in res.stderr and "dvc repro prepare" in res.stderr
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["data"].update(root=str(tmp_path / "empty"), download=False)
    res = run_stage(tmp_path, "prepare.py", params=raw)
    assert res.returncode == 2 and "Fashion-MNIST IDX files not found" in res.stderr
    assert not (tmp_path / "data" / "prepared" / "manifest.json").exists()
