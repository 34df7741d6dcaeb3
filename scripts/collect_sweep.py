"""Copy the files of finished `dvc exp` experiments into a sweep folder and rebuild its table (pwl.report.sweep).

    python scripts/collect_sweep.py converter-sweep --arch vgg --seed 0 linear=exp-lin lstsq=exp-lsq ...

For each VARIANT=EXP it reads, from the experiment's commit (git ref refs/exps/.../EXP): params.yaml, the dvc.lock
entries of the stages the table reads (train_student, distill, evaluate of the replica, export of the arch) as
runs/VARIANT/lock.yaml, and those stages' outputs (student.json, pwl.json, states.csv, state_bytes.csv). The
`-S` overrides are recorded in sweep.yaml as the difference of the experiment's params from the first variant's.
Nothing is run: the experiments must have finished (`dvc queue status`)."""
import argparse
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pwl import paths  # noqa: E402
from pwl.report import index, sweep  # noqa: E402


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def exp_ref(name: str) -> str:
    refs = [r for r in git("for-each-ref", "--format=%(refname)", "refs/exps").split() if r.rsplit("/", 1)[-1] == name]
    if len(refs) != 1:
        sys.exit(f"error: experiment {name!r}: {len(refs)} refs under refs/exps (see `dvc exp list --all-commits`)")
    return refs[0]


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def collect(folder: Path, arch: str, seed: int, variants: list[tuple[str, str]], title: str, question: str):
    base_params = None
    spec = {"title": title, "arch": arch, "seed": seed, "question": question, "variants": {}}
    if (folder / sweep.SWEEP).exists():  # keep the prose (question, conclusion) written for it
        old = sweep.spec(folder)
        spec.update({k: old[k] for k in ("title", "question", "conclusion") if k in old})
    for name, exp in variants:
        ref = exp_ref(exp)
        params = yaml.safe_load(git("show", f"{ref}:params.yaml"))
        profile = params["profile"]
        lock = yaml.safe_load(git("show", f"{ref}:dvc.lock"))["stages"]
        wanted = [f"train_student@{arch}-{seed}", f"distill@{arch}-{seed}", f"evaluate@{arch}-{seed}",
                  f"export@{arch}"]
        run = folder / sweep.RUNS / name
        run.mkdir(parents=True, exist_ok=True)
        (run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        (run / "lock.yaml").write_text(yaml.safe_dump({"schema": "2.0", "stages": {k: lock[k] for k in wanted}},
                                                      sort_keys=False))
        for src in (paths.metrics(profile, arch, "student", seed), paths.metrics(profile, arch, "pwl", seed),
                    paths.states_table(profile, arch, seed), paths.arch_metrics(profile, arch, "state_bytes.csv")):
            (run / src.name).write_bytes(subprocess.run(["git", "show", f"{ref}:{src.as_posix()}"], check=True,
                                                        capture_output=True).stdout)
        base_params = base_params or flat(params)
        changed = {k: v for k, v in flat(params).items() if base_params.get(k) != v}
        spec["variants"][name] = {"exp": exp, "changes": " ".join(f"-S {k}={v}" for k, v in changed.items())
                                  or "(the profile as it is)"}
    (folder / sweep.SWEEP).write_text(yaml.safe_dump(spec, sort_keys=False, width=120))
    sweep.write(folder)
    paths.INDEX.write_text(index.build(paths.REPORTS))
    print(f"{folder}: {len(variants)} runs collected; table.csv and README.md rebuilt; index updated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the sweep folder under reports/")
    parser.add_argument("variants", nargs="+", help="VARIANT=EXP_NAME, the first is the baseline")
    parser.add_argument("--arch", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--title", default="Converter sweep")
    parser.add_argument("--question", default="Which converter makes every loading state usable?")
    args = parser.parse_args()
    pairs = [tuple(v.split("=", 1)) for v in args.variants]
    if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        sys.exit("error: give each variant as VARIANT=EXP_NAME")
    collect(paths.report_dir(args.name), args.arch, args.seed, pairs, args.title, args.question)


if __name__ == "__main__":
    main()
