"""Training replicas in the report (mean ± std, paired significance) and the index of report folders."""
import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from pwl.report import index, seeds
from pwl.report.markdown import regenerate_command
from pwl.states import all_states, label


def per_seed_table() -> pd.DataFrame:
    """Three seeds: PWL all-S beats scratch by 1.0 ± 0.2 (real), KD by 0.0 ± 1.0 (noise); the prefix climbs."""
    return pd.DataFrame({"teacher": [90.0, 91.0, 92.0], "scratch_student": [86.0, 87.0, 88.0],
                         "kd_student": [86.0, 89.0, 88.0], "SS": [87.0, 88.2, 88.8], "TS": [88.0, 89.0, 90.0],
                         "TT": [90.0, 91.0, 92.0]}, index=[0, 1, 2])


def test_aggregate_gives_mean_sample_std_and_count():
    cells = seeds.aggregate(per_seed_table()).set_index("cell")
    assert cells.loc["teacher", "mean"] == pytest.approx(91.0)
    assert cells.loc["teacher", "std"] == pytest.approx(1.0)  # sample std (ddof 1), not population
    assert (cells["n"] == 3).all()
    assert list(seeds.mean_pm_std(cells.reset_index()))[0] == "91.00 ± 1.00"
    one = seeds.aggregate(per_seed_table().iloc[:1])
    assert one["std"].isna().all() and list(seeds.mean_pm_std(one))[0] == "90.00"


def test_paired_differences_are_significant_only_under_holm():
    diffs = seeds.compare(per_seed_table()).set_index("difference")
    real = diffs.loc["PWL all-S - scratch"]  # per seed: +1.0, +1.2, +0.8
    assert real["mean"] == pytest.approx(1.0) and real["std"] == pytest.approx(0.2)
    assert real["se"] == pytest.approx(0.2 / math.sqrt(3)) and real["significant"] == True  # noqa: E712
    noise = diffs.loc["PWL all-S - KD"]  # +1.0, -0.8, +0.8: mean 0.33, se 0.58
    assert noise["significant"] == False  # noqa: E712 (not None: two seeds or more give a verdict)
    assert list(diffs.index[3:]) == ["prefix step SS->TS", "prefix step TS->TT"]
    assert diffs.loc["prefix step SS->TS", "mean"] == pytest.approx((1.0 + 0.8 + 1.2) / 3)
    single = seeds.compare(per_seed_table().iloc[:1])
    assert single["significant"].isna().all() and single["se"].isna().all()


def test_replica_cells_from_one_seeds_files():
    states = pd.DataFrame({"state": all_states(2)})
    states["label"] = states["state"].map(label)
    states["test_acc"] = [80.0, 70.0, 85.0, 90.0]  # SS, ST, TS, TT
    row = {"teacher": 90.0, "scratch_student": 81.0, "kd_student": None, "prefix_mean": 82.5}
    cells = seeds.replica_cells(row, states)
    assert cells == {"teacher": 90.0, "scratch_student": 81.0, "prefix_mean": 82.5, "SS": 80.0, "TS": 85.0,
                     "TT": 90.0, "worst_state": 70.0}  # no KD stage: no KD cell


def fake_report(root, name, profile, dataset, teacher):
    d = root / name
    d.mkdir(parents=True)
    run = {"profile": profile, "name": name, "dataset": dataset, "source": f"{dataset}-files", "date": "2026-11-26",
           "git_rev": "abc1234", "seeds": [0, 1, 2]}
    (d / "summary.json").write_text(json.dumps({"run": run, "vgg": {"teacher": teacher, "student": 80.0,
                                                                     "pwl_all_S": 80.5, "worst_state": 70.25}}))


def test_index_lists_every_report_folder_with_its_headline(tmp_path):
    fake_report(tmp_path, "default", "default", "fashion-mnist", 90.16)
    fake_report(tmp_path, "cifar10-cpu", "cifar10-cpu", "imagefolder", 78.4)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.json").write_text(json.dumps({"vgg": {"teacher": 1.0}}))  # no run block: skipped
    text = index.build(tmp_path)
    lines = [ln for ln in text.splitlines() if ln.startswith("| [")]
    assert len(lines) == 2 and lines[0].startswith("| [cifar10-cpu](cifar10-cpu/README.md)")
    assert "fashion-mnist (fashion-mnist-files)" in lines[1] and "abc1234" in lines[1] and "0, 1, 2" in lines[1]
    assert "**vgg**: T 90.16, S 80.00, PWL all-S 80.50, worst state 70.25" in lines[1]
    assert "no report yet" in index.build(tmp_path / "empty")


def test_regenerate_command_writes_the_overrides_as_docs_reports_md_does():
    variant = SimpleNamespace(profile="default", name="default-seeds", seeds=(0, 1, 2), archs=("vgg", "resnet"))
    assert regenerate_command(variant) == ("dvc exp run -S profile=default -S 'seeds=[0,1,2]' "
                                           "-S 'archs=[vgg,resnet]' -S name=default-seeds")
    profile = SimpleNamespace(profile="smoke", name="smoke", seeds=(0,), archs=("vgg",))
    assert regenerate_command(profile) == "dvc exp run -S profile=smoke"
