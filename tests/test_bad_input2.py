"""Bad input, second round (issue 18): params checked by their own stage before DVC touches any output, empty
lists and booleans where a number belongs, a params file that is not UTF-8, training logs and reports that
survive a failed run, a resume checkpoint that fits the params but not the model."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pwl import paths
from pwl.atomic import replace_dir, staging_dir
from pwl.config import load_params, validate_params
from pwl.errors import PWLError
from pwl.profile import compose
from pwl.stage_cli import epoch_logger
from test_train import fit_plain, tiny_net

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("params") / "params.yaml"
    compose("smoke", out=out, conf=REPO / "conf")
    return yaml.safe_load(out.read_text())


def edited(raw: dict, dotted: str, value) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(raw))
    *head, last = dotted.split(".")
    node = raw
    for k in head:
        node = node[k]
    node[last] = value
    return raw


@pytest.mark.parametrize("dotted, value, needle", [
    ("archs", [], "archs: List should have at least 1 item"),
    ("seeds", [], "seeds [] must be a non-empty list without repeats"),
    ("loadsim.simulate", [], "loadsim.simulate: List should have at least 1 item"),
    ("arch.vgg.train_teacher.epochs", True, "arch.vgg.train_teacher.epochs: true is a yes/no value, not a number"),
    ("eval.batch_size", False, "eval.batch_size: false is a yes/no value"),
    ("seed", True, "seed: true is a yes/no value"),
    ("seeds", [0, True], "seeds.1: Input should be a valid integer"),
    ("arch.vgg.train_teacher.lr", True, "lr: true is a yes/no value"),
    ("name", True, "name: true is a yes/no value"),
])
def test_empty_lists_and_booleans_are_rejected(smoke, dotted, value, needle):
    with pytest.raises(PWLError) as err:
        validate_params(edited(smoke, dotted, value), "test")
    assert needle in str(err.value), str(err.value)


def test_booleans_where_a_yes_no_belongs_still_pass(smoke):
    params = validate_params(edited(edited(smoke, "augment.flip", False), "data.download", True), "test")
    assert params.augment.flip is False and params.data.download is True


def test_a_params_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes("profile: d\xe9faut\n".encode("latin-1"))
    with pytest.raises(PWLError, match=r"(?s)params.yaml is not UTF-8 text \(byte 10.*save it as UTF-8"):
        load_params(path)


# ------------------------------------------------------------------ the check_params stage

def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def check_params(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.check_params"], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


def test_check_params_stage(tmp_path, smoke):
    """Valid params: the output, whose bytes are the same whatever the params (nothing downstream reruns
    for it); bad params: exit 2 with the message, no traceback, and no file written or changed."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(smoke))
    res = check_params(tmp_path)
    assert res.returncode == 0, res.stderr
    first = (tmp_path / paths.PARAMS_CHECKED).read_bytes()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(edited(smoke, "arch.vgg.train_teacher.lr", 0.01)))
    assert check_params(tmp_path).returncode == 0 and (tmp_path / paths.PARAMS_CHECKED).read_bytes() == first
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "teacher.safetensors").write_bytes(b"weights of the last good run")
    for dotted, value, needle in (("arch.vgg.train_teacher.lr", -1, "arch.vgg.train_teacher.lr"),
                                  ("archs", [], "archs"), ("name", "../evil", "name"),
                                  ("arch.vgg.train_teacher.epochs", True, "yes/no")):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(edited(smoke, dotted, value)))
        (tmp_path / paths.PARAMS_CHECKED).unlink(missing_ok=True)  # as DVC removes the stage's output first
        before = tree(tmp_path)
        res = check_params(tmp_path)
        assert res.returncode == 2 and "Traceback" not in res.stderr and needle in res.stderr, res.stderr
        assert "invalid params in params.yaml" in res.stderr and "no other stage ran" in res.stderr
        assert tree(tmp_path) == before
    (tmp_path / "params.yaml").write_bytes(b"name: \xff\n")
    res = check_params(tmp_path)
    assert res.returncode == 2 and "is not UTF-8 text" in res.stderr


def test_every_stage_depends_on_check_params():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    check = stages.pop("check_params")
    assert "params.yaml" in check["deps"] and [next(iter(o)) for o in check["outs"]] == [str(paths.PARAMS_CHECKED)]
    for name, stage in stages.items():
        assert str(paths.PARAMS_CHECKED) in stage.get("do", stage)["deps"], name


# ------------------------------------------------------------------ logs and reports survive a failed run

def test_training_log_of_the_last_good_run_survives_a_failed_run(tmp_path):
    live = tmp_path / "training" / "teacher"
    with epoch_logger(live) as on_epoch:
        on_epoch({"epoch": 1, "loss": 2.0})
    good = tree(live)
    assert any(k.endswith("loss.tsv") for k in good)
    for error in (PWLError("stopped"), KeyboardInterrupt()):  # an exit 2, and a kill (Ctrl-C)
        with pytest.raises(type(error)):
            with epoch_logger(live) as on_epoch:
                on_epoch({"epoch": 1, "loss": 9.0})
                raise error
        assert tree(live) == good and not (tmp_path / "training" / "teacher.tmp").exists()
    with epoch_logger(live) as on_epoch:
        on_epoch({"epoch": 1, "loss": 1.0})
    assert tree(live) != good and sorted(tree(live)) == sorted(good)


def test_replace_dir_after_a_killed_run(tmp_path):
    """A staging folder left by a kill is cleared by the next run; the target is replaced whole."""
    target = tmp_path / "figures"
    target.mkdir()
    (target / "old.png").write_bytes(b"old")
    (tmp_path / "figures.tmp").mkdir()
    (tmp_path / "figures.tmp" / "half.png").write_bytes(b"half")
    staging = staging_dir(target)
    assert list(staging.iterdir()) == []
    (staging / "new.png").write_bytes(b"new")
    replace_dir(staging, target)
    assert tree(tmp_path) == {"figures/new.png": hashlib.md5(b"new").hexdigest()}


# ------------------------------------------------------------------ a resume checkpoint for another model

@pytest.mark.parametrize("damage", ["renamed keys", "no optimizer"])
def test_resume_checkpoint_that_fits_the_params_but_not_the_model(tmp_path, damage):
    ckpt = tmp_path / "run.pt"
    fit_plain(tiny_net(), ckpt)
    ck = torch.load(ckpt, weights_only=False)
    ck["epoch"] = 1
    if damage == "renamed keys":
        ck["model"] = {f"renamed.{k}": v for k, v in ck["model"].items()}
    else:
        del ck["optimizer"]
    torch.save(ck, ckpt)
    with pytest.raises(PWLError) as err:
        fit_plain(tiny_net(), ckpt)
    msg = str(err.value)
    assert f"resume checkpoint {ckpt} matches this run's params but not its model or optimizer" in msg
    assert f"delete it (rm {ckpt}) and rerun" in msg


# ------------------------------------------------------------------ pack header fields no sha256 covers

@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory):
    from conftest import PAIRS, make_mixed
    from pwl.models import parse_model_config
    from pwl.runtime import export_pack, model_configs
    out = tmp_path_factory.mktemp("pack")
    tc, sc = (parse_model_config(PAIRS["vgg"][r]) for r in ("teacher", "student"))
    export_pack(make_mixed("vgg"), out, model_configs(tc, sc, 3, 5, 8))
    return out


def use_pack(d: Path) -> None:
    """What the runtime does with a header: index it, then check and view every part's tensors."""
    from pwl.runtime.pack import pack_index, pack_path
    index = pack_index(d)
    buf = bytearray(pack_path(d).read_bytes())
    for name in index.parts:
        index.verify(name, buf, 0)
        index.tensors_of(name, buf, 0)
    assert index.num_blocks == 3


@pytest.mark.parametrize("edit, needle", [
    (lambda h, m, k: m.update(num_blocks=7), "num_blocks is 7 but the teacher parts are"),
    (lambda h, m, k: m.update(num_blocks="3"), "num_blocks is '3'"),
    (lambda h, m, k: m.update(num_blocks=True), "num_blocks is True"),
    (lambda h, m, k: h[k].update(shape=[5, 999]), "{k}: shape [5, 999]"),
    (lambda h, m, k: h[k].update(shape=[-5, -16]), "a dimension of tensor {k}"),
    (lambda h, m, k: h[k].update(data_offsets=[8]), "IndexError"),
    (lambda h, m, k: m["parts"]["teacher_2"].update(end=10 ** 12), "teacher_2"),
    (lambda h, m, k: m["parts"]["teacher_2"].update(sha256="zz"), "sha256 'zz' is not 64 hex digits"),
])
def test_pack_header_fields_outside_the_sha256(pack_dir, tmp_path, edit, needle):
    from pwl.runtime.pack import header_bytes, pack_path, split_pack
    d = tmp_path / "shards"
    d.mkdir()
    header, meta, data = split_pack(pack_path(pack_dir).read_bytes())
    key = [k for k, v in header.items() if k.startswith("student.") and len(v["shape"]) == 2][-1]  # a 2-D weight
    edit(header, meta, key)
    pack_path(d).write_bytes(header_bytes(header, meta) + data)
    with pytest.raises(PWLError) as err:
        use_pack(d)
    needle = needle.format(k=key)
    assert needle in str(err.value) and "export the model again" in str(err.value), str(err.value)


def test_generated_pack_headers(pack_dir, tmp_path_factory):
    """>= 300 generated edits of the header's tensor entries and metadata: exit 2 with a message, or a header
    whose every part checks and views cleanly; never a traceback."""
    from hypothesis import HealthCheck, given, settings
    from test_generated_input import exit_status, mutated
    from pwl.runtime.pack import header_bytes, pack_path, split_pack
    d = tmp_path_factory.mktemp("generated_pack")
    header, meta, data = split_pack(pack_path(pack_dir).read_bytes())
    base = {"header": header, "meta": meta}
    seen = {0: 0, 2: 0}

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutated(base))
    def check(raw):
        if not (isinstance(raw, dict) and isinstance(raw.get("header"), dict) and "meta" in raw):
            return
        pack_path(d).write_bytes(header_bytes(raw["header"], raw["meta"]) + data)
        seen[exit_status(lambda: use_pack(d))] += 1

    check()
    # How many of the 300 draws keep the outer shape depends on the pack's bytes (its sha256 strings seed the
    # mutations), so the floor leaves room: CI saw 249 usable draws where this machine saw more.
    assert seen[2] > 150 and sum(seen.values()) >= 200, seen


# ------------------------------------------------------------------ data with nothing to learn

def test_all_black_training_images_are_a_data_error_at_prepare(tmp_path):
    """Caught at prepare, naming the data, not at the first training step as a non-finite loss."""
    from PIL import Image
    from test_data import _folder
    root = tmp_path / "black"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (8, 8), (0, 0, 0)).save(root / split / c / f"{i}.png")
    with pytest.raises(PWLError, match="(?s)every training image from imagefolder:.* is one flat value \\(0 in every "
                                       "pixel and channel\\).*all black"):
        _folder(root, tmp_path)
    assert not (tmp_path / "pf").exists()  # nothing written
