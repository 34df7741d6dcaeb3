"""What a report folder keeps beside its README so that it can be recomputed and traced (reports/<name>/):

- params.yaml: the validated params the report was made with;
- run.json: the run record: date, the git revision of the code that made it (HEAD at run time; `+` when the
  code paths that matter had uncommitted changes: such a report cannot be cited), the environment;
- lock.yaml: the report's own lock: the dvc.lock entries (command, code and data hashes, params, outputs) of
  every stage whose outputs the report read, copied at report time, so a replica trained under another
  params set (e.g. a seeds variant) stays versioned after dvc.lock moves on.
"""
import hashlib
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import yaml

PARAMS, RUN, LOCK = "params.yaml", "run.json", "lock.yaml"
DVC_LOCK = Path("dvc.lock")
REPLICA_STAGES = ("train_teacher", "train_student", "kd", "distill", "evaluate")


def record(env: dict) -> dict:
    """The run record of a report made now, in this checkout."""
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "git_rev": env.get("git_rev"), "env": env}


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def stage_names(params) -> list[str]:
    """Every dvc.yaml stage whose outputs the report of `params` reads."""
    names = ["prepare"]
    for arch in params.archs:
        names += [f"{st}@{arch}-{s}" for s in params.seeds for st in REPLICA_STAGES]
        if params.loadsim is not None:
            names += [f"export@{arch}"] + [f"loadsim@{arch}-{d}" for d in params.loadsim.simulate]
    return names


def file_outs(entry: dict) -> dict[str, str]:
    """path -> md5 of the file outputs of a dvc.lock entry that git holds (under reports/, what a report reads;
    models live in DVC's cache, and directories carry a `.dir` hash: both are in the lock, not compared here)."""
    return {o["path"]: o["md5"] for o in entry.get("outs", [])
            if str(o["path"]).startswith("reports/") and not str(o.get("md5", "")).endswith(".dir")}


def extract_lock(params, lock_file: Path = DVC_LOCK) -> dict:
    """The dvc.lock entries of the stages this report reads whose file outputs are the files present now
    (an entry of another profile or an older run is left out, and `--check` then names that replica)."""
    if not Path(lock_file).exists():
        return {"schema": "2.0", "stages": {}}
    stages = (yaml.safe_load(Path(lock_file).read_text()) or {}).get("stages", {})
    kept = {}
    for name in stage_names(params):
        entry = stages.get(name)
        if entry and not problems(params, entry):
            kept[name] = entry
    return {"schema": "2.0", "stages": kept}


def unlocked(params, lock: dict) -> list[str]:
    """The stages the report reads that its lock does not hold, or holds with outputs other than the files
    committed now."""
    stages = lock.get("stages", {})
    bad = []
    for name in stage_names(params):
        entry = stages.get(name)
        why = [f"not in {LOCK}"] if entry is None else problems(params, entry)
        bad += [f"{name} ({w})" for w in why]
    return bad


def problems(params, entry: dict) -> list[str]:
    """Why a lock entry does not lock this report's inputs: its git-held outputs lie outside the profile's
    folder (another profile's run of a stage of the same name) or differ from the files present."""
    outs = file_outs(entry)
    if not outs:
        return ["locks no file under reports/"]
    out = [f"{p} is another profile's" for p in outs if not p.startswith(f"reports/{params.profile}/")]
    return out or [f"{p} differs from the locked md5 {h[:8]}" for p, h in outs.items()
                   if not Path(p).exists() or md5(p) != h]


def is_committed_ancestor(rev: str | None) -> str | None:
    """None when `rev` is a commit that HEAD descends from; else why not."""
    if not rev:
        return "no git revision recorded"
    if rev.endswith("+"):
        return f"{rev}: made from code with uncommitted changes"
    ok = subprocess.run(["git", "merge-base", "--is-ancestor", rev, "HEAD"], capture_output=True, text=True)
    if ok.returncode != 0:
        return f"{rev} is not an ancestor of HEAD (a commit on no branch of this history, or unknown)"
    return None


def write(out_dir: Path, params, run: dict, lock: dict) -> None:
    from ..atomic import atomic_write
    atomic_write(out_dir / PARAMS, yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False, width=110).encode())
    atomic_write(out_dir / RUN, (json.dumps(run, indent=2, sort_keys=True) + "\n").encode())
    atomic_write(out_dir / LOCK, yaml.safe_dump(lock, sort_keys=False, width=110).encode())
