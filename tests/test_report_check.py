"""The report checks itself (`python -m pwl.report --check`), its statistics, the deviations list and the
figures' legends."""
import json
import math
import shutil
import subprocess
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import yaml

from pwl.config import validate_params
from pwl.report import check, deviations, figures, seeds, stats

REPO = Path(__file__).resolve().parents[1]
FOLDER = "default-seeds"  # the smallest committed report (one arch) and the profile folder it reads


# --- statistics against closed forms and published values ---------------------------------------------------

@pytest.mark.parametrize("t", [0.3, 1.0, 2.0, 4.302652729911275, 9.0])
def test_t_p_value_matches_the_closed_forms_for_one_and_two_df(t):
    assert stats.t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-10)
    assert stats.t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-10)


def test_t_p_value_at_tabulated_critical_values():
    assert stats.t_two_sided_p(4.302652729911275, 2) == pytest.approx(0.05, abs=1e-9)  # t_{0.975, 2}
    assert stats.t_two_sided_p(2.228138851986274, 10) == pytest.approx(0.05, abs=1e-9)  # t_{0.975, 10}
    assert stats.t_two_sided_p(2.5758293035489, 1e7) == pytest.approx(0.01, abs=1e-6)  # the normal limit


def test_paired_t_on_hand_made_data():
    t, p = stats.paired_t([1.0, 1.2, 0.8])  # mean 1, sd 0.2: t = 1 / (0.2 / sqrt 3)
    assert t == pytest.approx(5 * math.sqrt(3)) and p == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert stats.paired_t([4.0, 4.0, 4.0]) == (math.inf, 0.0)
    assert all(math.isnan(v) for v in stats.paired_t([1.0]))


def test_holm_step_down():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    got = stats.holm([0.5, math.nan, 0.01])
    assert got[0] == pytest.approx(0.5) and math.isnan(got[1]) and got[2] == pytest.approx(0.02)


def test_wilson_interval_known_values():
    assert stats.wilson(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    assert stats.wilson(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    assert stats.wilson_half_pct(88.0, 10000) == pytest.approx(0.637, abs=1e-3)  # ±0.6 pt at 88% on 10k images


def test_seed_table_uses_t_and_holm():
    per_seed = pd.DataFrame({"teacher": [90.0, 91.0, 92.0], "scratch_student": [86.0, 87.0, 88.0],
                             "SS": [87.0, 88.2, 88.8], "TS": [88.0, 89.0, 90.0], "TT": [90.0, 91.0, 92.0]})
    d = seeds.compare(per_seed).set_index("difference")
    p = 1 - 5 * math.sqrt(3) / math.sqrt(75 + 2)
    assert d.loc["PWL all-S - scratch", "p"] == pytest.approx(p)
    assert d.loc["PWL all-S - scratch", "p_holm"] == pytest.approx(2 * p)  # third smallest of 4: times 4 - 2
    assert bool(d.loc["PWL all-S - scratch", "significant"]) is (2 * p < stats.ALPHA)


# --- deviations from the paper, generated from params --------------------------------------------------------

def test_cifar10_cpu_deviations_name_imagefolder_widths_and_pretraining():
    params = validate_params(yaml.safe_load((REPO / "reports/cifar10-cpu/params.yaml").read_text()))
    prepared = json.loads((REPO / "reports/cifar10-cpu/metrics/prepare.json").read_text())
    counts = {"teacher_params": 1, "student_params": 1, "converter_params": 1}
    for arch in params.archs:
        rows = {r["item"]: r for r in deviations.rows(params, arch, prepared, counts)}
        assert "imagefolder" in rows["dataset"]["ours"] and rows["dataset"]["same"] == "**no**"
        assert rows["teacher"]["same"] == "**no**" and "widths" in rows["teacher"]["ours"]
        assert rows["converters"]["ours"].startswith("learned")
        assert "teacher pretrained" in rows and rows["states evaluated"]["same"] == "**no**"
    vit = {r["item"]: r for r in deviations.rows(params, "vit", prepared, counts)}
    assert vit["teacher pretrained"]["same"] == "**no**" and "ImageNet" in vit["teacher pretrained"]["paper"]


# --- the check ---------------------------------------------------------------------------------------------

def git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """A git repository holding one committed report and the profile folder it reads; its run.json names a
    commit of that repository."""
    root = tmp_path_factory.mktemp("repo")
    params = yaml.safe_load((REPO / "reports" / FOLDER / "params.yaml").read_text())
    for rel in (f"reports/{FOLDER}", f"reports/{params['profile']}/metrics", f"reports/{params['profile']}/training",
                f"reports/{params['profile']}/loadsim", "reference"):
        shutil.copytree(REPO / rel, root / rel)
    git(root, "init", "-q")
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base", "--allow-empty")
    old = json.loads((root / "reports" / FOLDER / "run.json").read_text())["git_rev"]
    new = git(root, "rev-parse", "--short=" + str(len(old)), "HEAD")
    for name in ("run.json", "README.md", "summary.json"):  # the revision as this repository knows it
        f = root / "reports" / FOLDER / name
        f.write_text(f.read_text().replace(old, new))
    return root


def test_check_passes_on_the_committed_report_and_fails_on_a_one_cell_edit(repo_copy, monkeypatch):
    monkeypatch.chdir(repo_copy)
    folder = Path("reports") / FOLDER
    problems, _ = check.check_folder(folder)
    assert problems == []
    table = folder / "tables" / "summary.csv"
    original = table.read_text()
    df = pd.read_csv(table, dtype=str, keep_default_na=False)
    df.loc[0, "teacher"] = "99.999"
    df.to_csv(table, index=False)
    try:
        problems, _ = check.check_folder(folder)
    finally:
        table.write_text(original)
    assert any("tables/summary.csv" in p and "`teacher`" in p and "99.999" in p for p in problems)


def test_check_fails_on_a_revision_that_is_not_an_ancestor(repo_copy, monkeypatch):
    monkeypatch.chdir(repo_copy)
    run_file = Path("reports") / FOLDER / "run.json"
    original = run_file.read_text()
    empty_tree = git(repo_copy, "hash-object", "-t", "tree", "/dev/null")
    side = git(repo_copy, "-c", "user.email=t@t", "-c", "user.name=t", "commit-tree", empty_tree, "-m", "side")[:7]
    try:
        for rev in (side, json.loads(original)["git_rev"] + "+"):
            run_file.write_text(json.dumps({**json.loads(original), "git_rev": rev}))
            problems, _ = check.check_folder(Path("reports") / FOLDER)
            assert any(p.startswith("git revision") for p in problems), rev
    finally:
        run_file.write_text(original)


# --- figures: legends never cover a data point ----------------------------------------------------------------

def _points_under_legends(fig) -> int:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [leg.get_window_extent(renderer) for ax in fig.axes for leg in [ax.get_legend()] if leg]
    boxes += [leg.get_window_extent(renderer) for leg in fig.legends]
    hits = 0
    for ax in fig.axes:
        for line in ax.get_lines():
            xy = ax.transData.transform(line.get_xydata()) if len(line.get_xydata()) else []
            hits += sum(b.contains(x, y) for x, y in xy for b in boxes)
        for coll in ax.collections:
            offsets = coll.get_offsets()
            if len(offsets):
                hits += sum(b.contains(x, y) for x, y in ax.transData.transform(offsets) for b in boxes)
    return hits


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
def test_every_figure_kind_keeps_its_legend_off_the_data(arch, tmp_path, monkeypatch):
    from matplotlib import pyplot as plt
    kept = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: kept.append(fig))
    root, profile = REPO / "reports", "default"
    from pwl.report import tables
    monkeypatch.chdir(REPO)
    row = tables.summary(profile, [arch], 0).iloc[0]
    st = tables.states(profile, arch, 0)
    figures.loading_orders(tables.orders(st), row, arch, 10000, None, tmp_path / "a.png")
    with_bytes, front = tables.pareto(profile, arch, 0)
    figures.pareto(arch, with_bytes, front, tmp_path / "b.png")
    curves = {arch: {r: tables.curve(profile, arch, r, 0) for r in ("teacher", "student", "kd", "pwl")}}
    figures.training_curves(curves, {arch: {"kd": 3, "pwl": 3}}, tmp_path / "c.png")
    _, dev = tables.loadsim(profile, arch, ["lte", "nvme"])
    figures.loadsim_curves(arch, dev, row, tmp_path / "d.png")
    assert len(kept) == 4 and root.exists()
    for fig in kept:
        assert _points_under_legends(fig) == 0
        plt.close(fig)
    assert matplotlib.get_backend().lower() == "agg"
