"""A sweep folder (pwl.report.sweep): its table follows from the runs' files, the targets are read the right way
round, and `--check` fails when a run's file is not what its experiment's lock recorded or the table was edited."""
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pwl.report import check, sweep
from pwl.states import all_states, label


def md5(p: Path) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()


def make_run(run: Path, kind: str, drop: float) -> None:
    """A 3-block run whose mixed states lose `drop` points on every non-prefix state."""
    run.mkdir(parents=True)
    params = {"profile": "default", "arch": {"vgg": {"distill": {"converter": {"kind": kind, "rank": 4},
                                                                "converter_init": "lstsq"}}}}
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    rows = []
    for s in all_states(3):
        t = s.count("T")
        acc = 0.88 + 0.01 * t - (drop / 100 if label(s) in ("suffix", "contiguous", "other") else 0)
        rows.append({"state": s, "label": label(s), "teacher_blocks": t, "val_acc": acc, "test_acc": acc})
    pd.DataFrame(rows).to_csv(run / "states.csv", index=False, float_format="%.5f")
    (run / "pwl.json").write_text(json.dumps({"converter_params": 100, "wall_s": 12.5}))
    (run / "student.json").write_text(json.dumps({"test_acc": 0.885}))
    pd.DataFrame([{"state": s, "label": label(s), "bytes": 10, "teacher_bytes": 0, "student_bytes": 10,
                   "converter_bytes": 400 * s.count("T") % 3} for s in all_states(3)]).to_csv(
        run / "state_bytes.csv", index=False)
    outs = [{"path": f"reports/default/metrics/vgg/s0/{f}", "md5": md5(run / f)}
            for f in ("states.csv", "pwl.json", "student.json", "state_bytes.csv")]
    (run / "lock.yaml").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"evaluate@vgg-0": {"outs": outs}}}))


@pytest.fixture
def sweep_dir(tmp_path) -> Path:
    folder = tmp_path / "reports" / "conv-sweep"
    make_run(folder / "runs" / "base", "linear", 3.0)
    make_run(folder / "runs" / "better", "lowrank", 0.2)
    (folder / "sweep.yaml").write_text(yaml.safe_dump({
        "title": "T", "arch": "vgg", "seed": 0, "question": "Q?",
        "variants": {"base": {"exp": "e1", "changes": "-"}, "better": {"exp": "e2", "changes": "-S x=1"}}}))
    sweep.write(folder)
    return folder


def test_table_follows_from_the_runs_and_names_missed_targets(sweep_dir):
    t = pd.read_csv(sweep_dir / "table.csv").set_index("variant")
    assert t.loc["base", "all_S"] == pytest.approx(88.0) and t.loc["base", "all_T"] == pytest.approx(91.0)
    # non-prefix states SST STS STT TST: 1.5 teacher blocks on average (+1 pt each), -3 pt each
    assert t.loc["base", "nonprefix_vs_all_S"] == pytest.approx(-1.5)
    assert t.loc["better", "converter"] == "lowrank r4" and t.loc["better", "init"] == "lstsq"
    assert t.loc["base", "all_S_vs_scratch"] == pytest.approx(-0.5) and t.loc["base", "min_prefix_step"] > 0
    # mixed states (6): prefixes TSS 89, TTS 90 sit between all-S 88 and all-T 91; non-prefix ones lose 3 points
    # (base: 86-87, below) or 0.2 (better: 88.8-89.8, between)
    assert t.loc["base", "mixed_between_anchors"] == "2 of 6" and t.loc["better", "mixed_between_anchors"] == "6 of 6"
    text = (sweep_dir / "README.md").read_text()
    base_line = next(ln for ln in text.splitlines() if ln.startswith("| base"))
    better_line = next(ln for ln in text.splitlines() if ln.startswith("| better"))
    assert "nonprefix_vs_all_S" in base_line and "nonprefix_vs_all_S" not in better_line


def test_check_passes_then_fails_on_an_edited_run_or_table(sweep_dir):
    assert check.check_sweep(sweep_dir) == []
    table = sweep_dir / "table.csv"
    table.write_text(table.read_text().replace("88.000", "89.000", 1))
    assert any("table.csv" in p for p in check.check_sweep(sweep_dir))
    sweep.write(sweep_dir)
    states = sweep_dir / "runs" / "better" / "states.csv"
    states.write_text(states.read_text().replace("0.88000", "0.89000", 1))
    assert any("better/states.csv" in p and "lock.yaml" in p for p in check.check_sweep(sweep_dir))


def test_a_sweep_is_not_checked_as_a_report(sweep_dir):
    reports = sweep_dir.parent
    assert check.report_folders(reports) == [] and check.sweep_folders(reports) == [sweep_dir]
