"""Crash safety for real: SIGKILL a training stage mid-epoch, `dvc repro` again, and it resumes from the last
completed epoch and ends with exactly the weights of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from test_pipeline_e2e import copy_repo, run

STAGE = "train_teacher@vgg-0"
OVERRIDES = ["data.train_limit=3000", "arch.vgg.train_teacher.epochs=3", "arch.vgg.train_teacher.batch_size=32"]


def setup_copy(tmp: Path, env) -> Path:
    work = tmp / "repo"
    copy_repo(work)
    run([sys.executable, "-m", "pwl.profile", "smoke", *OVERRIDES], work, env)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "snapshot"]):
        run(cmd, work, env)  # DVCLive needs a commit to exist
    run([sys.executable, "-m", "dvc", "repro", "prepare"], work, env)
    return work


def epochs_done(work: Path) -> int:
    ck = work / "checkpoints" / "vgg" / "s0" / "teacher.pt"
    if not ck.exists():
        return 0
    import torch
    try:
        return torch.load(ck, map_location="cpu", weights_only=False)["epoch"]
    except Exception:
        return 0


@pytest.mark.e2e
def test_sigkill_mid_epoch_then_repro_resumes_to_identical_weights(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.invalid",
           "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.invalid"}
    # reference: uninterrupted
    ref = setup_copy(tmp_path / "ref", env)
    run([sys.executable, "-m", "dvc", "repro", STAGE], ref, env)
    # interrupted: kill the whole process group (dvc and the stage) in the middle of epoch 2
    work = setup_copy(tmp_path / "kill", env)
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", STAGE], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while epochs_done(work) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    epoch1 = json.loads((ref / "reports" / "smoke" / "metrics" / "vgg" / "s0" / "teacher.json").read_text())
    time.sleep(0.3)  # into epoch 2
    assert proc.poll() is None, "training finished before it could be killed; make the run longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert epochs_done(work) == 1
    assert not (work / "models" / "vgg" / "s0" / "teacher.safetensors").exists()
    out = run([sys.executable, "-m", "dvc", "repro", STAGE], work, env).stdout
    assert "resuming after epoch 1" in out
    metrics = json.loads((work / "reports" / "smoke" / "metrics" / "vgg" / "s0" / "teacher.json").read_text())
    assert metrics["resumed_from_epoch"] == 1
    a = load_file(str(ref / "models" / "vgg" / "s0" / "teacher.safetensors"))
    b = load_file(str(work / "models" / "vgg" / "s0" / "teacher.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    for key in ("val_acc", "test_acc", "best_epoch"):
        assert metrics[key] == epoch1[key]
    # a finished stage leaves no resume checkpoint behind: `dvc repro -f` retrains instead of replaying it
    assert not (work / "checkpoints" / "vgg" / "s0" / "teacher.pt").exists()
