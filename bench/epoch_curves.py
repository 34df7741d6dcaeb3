"""What more epochs buy on a profile's data: test accuracy of each arch's teacher and scratch student trained
for several epoch budgets (each budget its own cosine schedule), run through the real stage script, several
trainings at once on one GPU. How the cifar10-cpu profile chose its epochs (README "Real images on the CPU").

    python bench/epoch_curves.py --params P.yaml --out curves.jsonl [--epochs 3 6 10 20] [--workers 6]

P.yaml: a composed params file whose prepared data exists in data/prepared (run `python stages/prepare.py
--params P.yaml` first). Each worker trains in its own copy of the code with its own outputs; one JSON line per
training: arch, role, epochs, val/test accuracy, per-epoch validation curve and seconds per epoch.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def one_training(params: dict, arch: str, role: str, epochs: int, work: Path) -> dict:
    p = json.loads(json.dumps(params))
    p["arch"][arch][f"train_{role}"]["epochs"] = epochs
    (work / "params.yaml").write_text(yaml.safe_dump(p))
    seed = str(p["seed"])
    res = subprocess.run([sys.executable, "stages/train.py", "--arch", arch, "--seed", seed, "--role", role],
                         cwd=work, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(work)})
    if res.returncode:
        return {"arch": arch, "role": role, "epochs": epochs, "error": res.stderr[-500:]}
    folder = work / "reports" / p["profile"]
    m = json.loads((folder / "metrics" / arch / f"s{seed}" / f"{role}.json").read_text())
    tsv = folder / "training" / arch / f"s{seed}" / role / "plots" / "metrics"
    curve = [float(line.split("\t")[-1]) for line in (tsv / "val" / "score.tsv").read_text().splitlines()[1:]]
    secs = [float(line.split("\t")[-1]) for line in (tsv / "epoch_s.tsv").read_text().splitlines()[1:]]
    return {"arch": arch, "role": role, "epochs": epochs, "val_acc": m["val_acc"], "test_acc": m["test_acc"],
            "device": m.get("device"), "val_curve": curve, "epoch_s": secs}


def worker(params: dict, jobs: list, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for d in ("pwl", "stages", "conf"):
            shutil.copytree(REPO / d, work / d)
        (work / "data").mkdir()
        (work / "data" / "prepared").symlink_to((REPO / "data" / "prepared").resolve())
        for job in jobs:
            rec = one_training(params, *job, work)
            with open(out, "a") as f:
                f.write(json.dumps(rec) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=int, nargs="+", default=[3, 6, 10, 20])
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    params = yaml.safe_load(Path(args.params).read_text())
    jobs = [(a, r, e) for a in params["archs"] for r in ("teacher", "student") for e in args.epochs]
    jobs.sort(key=lambda j: -j[2])  # longest first: the workers finish together
    if args.worker is not None:
        worker(params, jobs[args.worker::args.workers], args.out)
        return
    procs = [subprocess.Popen([sys.executable, __file__, "--params", args.params, "--out", str(args.out),
                               "--workers", str(args.workers), "--worker", str(i), "--epochs",
                               *map(str, args.epochs)]) for i in range(args.workers)]
    sys.exit(max(p.wait() for p in procs))


if __name__ == "__main__":
    main()
