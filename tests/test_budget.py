"""Budgeted deployment: weight bytes of every loading state, the (bytes, accuracy) Pareto front, and the
`python -m pwl.budget` command that picks a state for a byte budget on validation."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from pwl import budget
from pwl.profile import compose
from pwl.mixing import Converters, MixedModel
from pwl.models import build_model, parse_model_config
from pwl.runtime import export_pack, model_configs
from pwl.runtime.pack import pack_path
from pwl.states import all_states, label

REPO = Path(__file__).resolve().parents[1]


def test_pareto_front_on_a_hand_made_table():
    table = pd.DataFrame([
        ("SSS", 100, 80.0),   # cheapest: on the front
        ("SST", 150, 79.0),   # dearer and worse than SSS: dominated
        ("STS", 200, 85.0),   # on the front
        ("TSS", 200, 84.0),   # same bytes as STS, worse: dominated
        ("STT", 200, 85.0),   # ties STS on both: only the first by name is kept
        ("TST", 300, 85.0),   # dearer, no better: dominated
        ("TTS", 400, 90.0),   # on the front
        ("TTT", 500, 89.5),   # the teacher, but TTS is cheaper and better: dominated
    ], columns=["state", "bytes", "test_acc"])
    front = budget.pareto_front(table)
    assert list(front["state"]) == ["SSS", "STS", "TTS"]
    assert list(front["bytes"]) == [100, 200, 400] and front["test_acc"].is_monotonic_increasing
    shuffled = budget.pareto_front(table.sample(frac=1, random_state=0))
    assert list(shuffled["state"]) == ["SSS", "STS", "TTS"]  # independent of row order


def test_choose_picks_on_validation_within_the_budget():
    table = pd.DataFrame({"state": ["SS", "TS", "ST", "TT"], "bytes": [10, 50, 50, 100],
                          "val_acc": [0.80, 0.86, 0.86, 0.90], "test_acc": [0.79, 0.84, 0.88, 0.91]})
    assert budget.choose(table, 100)["state"] == "TT"
    assert budget.choose(table, 99)["state"] == "ST"  # a tie on validation: fewer bytes, then the name
    assert budget.choose(table, 49.9)["state"] == "SS"
    with pytest.raises(budget.PWLError, match="no state fits in 9 bytes: the smallest, SS, needs 10 bytes"):
        budget.choose(table, 9)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    torch.manual_seed(0)
    tc = parse_model_config({"family": "vgg", "widths": [8, 8, 16], "depths": [2, 1, 1]})
    sc = parse_model_config({"family": "vgg", "widths": [4, 8, 8], "depths": [1, 1, 1]})
    teacher, student = build_model(tc, 3, 10, 32), build_model(sc, 3, 10, 32)
    mixed = MixedModel(teacher, student, Converters(teacher.block_widths, student.block_widths)).eval()
    out = tmp_path_factory.mktemp("shards")
    export_pack(mixed, out, model_configs(tc, sc, 3, 10, 32))
    return mixed, out


def _nbytes(*modules) -> int:
    return sum(t.numel() * t.element_size() for m in modules for t in m.state_dict().values())


def test_state_bytes_count_the_parts_each_state_runs(shards):
    mixed, out = shards
    t, s, c = mixed.teacher, mixed.student, mixed.converters
    table = budget.state_bytes_table(out).set_index("state")
    assert list(table.index) == all_states(3) and (table["label"] == [label(x) for x in table.index]).all()
    assert table.loc["TTT", "bytes"] == _nbytes(t) and table.loc["SSS", "bytes"] == _nbytes(s)
    # block 1 from the teacher (with its embedder), blocks 2-3 from the student (with its head), E_1 between
    assert table.loc["TSS", "bytes"] == _nbytes(t.embed, t.blocks[0], s.blocks[1], s.blocks[2], s.head, c.enc[0])
    # S T S: D_1 into the teacher's block 2, E_2 back out of it
    assert table.loc["STS", "bytes"] == _nbytes(s.embed, s.blocks[0], t.blocks[1], s.blocks[2], s.head,
                                                c.dec[0], c.enc[1])
    assert table.loc["STS", "converter_bytes"] == _nbytes(c.dec[0], c.enc[1]) > 0
    assert (table["bytes"] == table[["teacher_bytes", "student_bytes", "converter_bytes"]].sum(axis=1)).all()


def _write_tables(root: Path, shard_dir: Path, arch: str = "vgg") -> pd.DataFrame:
    """The files `python -m pwl.budget` reads: params.yaml (name, seed), export's bytes, evaluate's states."""
    compose("smoke", out=root / "params.yaml", conf=REPO / "conf")
    metrics = root / "reports" / "smoke" / "metrics" / arch
    (metrics / "s0").mkdir(parents=True)
    nbytes = budget.state_bytes_table(shard_dir)
    nbytes.to_csv(metrics / "state_bytes.csv", index=False)
    acc = pd.DataFrame({"state": nbytes["state"], "label": nbytes["label"],
                        "val_acc": [0.5 + 0.05 * s.count("T") for s in nbytes["state"]],
                        "test_acc": [0.49 + 0.05 * s.count("T") for s in nbytes["state"]]})
    acc.to_csv(metrics / "s0" / "states.csv", index=False)
    return nbytes.merge(acc.drop(columns="label"), on="state")


def _cli(root: Path, *args):
    return subprocess.run([sys.executable, "-m", "pwl.budget", *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)


def test_budget_command(shards, tmp_path):
    _, out = shards
    table = _write_tables(tmp_path, out)
    limit = table.loc[table["state"] == "TTS", "bytes"].item()  # TTS fits; TTT (the teacher) does not
    best = budget.choose(table, limit)
    res = _cli(tmp_path, "--arch", "vgg", "--max-bytes", f"{limit:.6e}")
    assert res.returncode == 0, res.stderr
    assert f"chosen on validation: {best['state']}" in res.stdout
    assert f"test accuracy {100 * best['test_acc']:.2f}%" in res.stdout
    small = _cli(tmp_path, "--arch", "vgg", "--max-bytes", "10")
    assert small.returncode == 2 and "no state fits in 10 bytes" in small.stderr and "Traceback" not in small.stderr
    missing = _cli(tmp_path, "--arch", "resnet", "--max-bytes", "2e6")
    assert missing.returncode == 2 and "reports/smoke/metrics/resnet/s0/states.csv is missing" in missing.stderr
    assert "dvc repro evaluate@resnet-0" in missing.stderr
    (tmp_path / "reports" / "smoke" / "metrics" / "vgg" / "state_bytes.csv").unlink()
    no_bytes = _cli(tmp_path, "--arch", "vgg", "--max-bytes", "2e6")
    assert no_bytes.returncode == 2 and "dvc repro export@vgg" in no_bytes.stderr
    assert _cli(tmp_path, "--arch", "vgg", "--max-bytes", "-1").returncode == 2


def test_part_bytes_rejects_a_damaged_header(shards, tmp_path):
    _, out = shards
    d = tmp_path / "shards"
    shutil.copytree(out, d)
    pack = pack_path(d)
    pack.write_bytes(b"\x05" + pack.read_bytes()[1:])  # the header's length: implausible
    with pytest.raises(budget.PWLError, match="header of .* is unreadable"):
        budget.part_bytes(d)
