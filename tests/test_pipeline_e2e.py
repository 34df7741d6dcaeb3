"""End to end: the real `dvc exp run -S profile=smoke` (Hydra composition + dvc repro) in a temporary copy."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
ARCHS = ("vgg", "resnet", "vit")


def copy_repo(dst: Path) -> None:
    """Tracked and untracked-but-not-ignored files only: no data, models, checkpoints or venv."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    # results of the default profile must not leak into the smoke run
    for stale in ("dvc.lock", "reports"):
        p = dst / stale
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


def run(cmd, cwd, env):
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res


@pytest.mark.e2e
def test_smoke_profile_runs_the_real_pipeline(tmp_path):
    work = tmp_path / "repo"
    copy_repo(work)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.invalid",
           "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.invalid", "DVC_NO_ANALYTICS": "1"}
    run(["git", "init", "-q"], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "snapshot"], work, env)
    run([sys.executable, "-m", "dvc", "exp", "run", "-S", "profile=smoke"], work, env)

    params = (work / "params.yaml").read_text()
    assert "profile: smoke" in params  # the one switch recomposed params.yaml
    assert (work / "dvc.lock").exists()
    report = (work / "reports" / "README.md").read_text()
    assert "profile `smoke`" in report
    summary = pd.read_csv(work / "reports" / "tables" / "summary.csv")
    assert list(summary["arch"]) == list(ARCHS)
    for arch in ARCHS:
        m = {r: json.loads((work / "reports" / "metrics" / arch / f"{r}.json").read_text())
             for r in ("teacher", "student", "pwl", "eval")}
        states = pd.read_csv(work / "reports" / "metrics" / arch / "states.csv", dtype={"state": str})
        n = m["eval"]["num_blocks"]
        assert len(states) == 2 ** n and states["state"].str.len().eq(n).all()
        # the all-teacher state IS the teacher: same test accuracy as the teacher stage measured
        assert m["eval"]["all_teacher_test"] == pytest.approx(m["teacher"]["test_acc"], abs=1e-12)
        for role in ("teacher", "student", "pwl"):
            assert m[role]["wall_s"] > 0
        assert (work / "reports" / "figures" / f"{arch}_loading.png").stat().st_size > 1000
    # a second repro has nothing to do: every stage is cached
    out = run([sys.executable, "-m", "dvc", "repro"], work, env).stdout
    assert "didn't change, skipping" in out or "Data and pipelines are up to date" in out
