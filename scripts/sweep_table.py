"""The README's sweep table from `dvc exp show --json`: one row per experiment (and the baseline commit per arch),
from the metrics files the stages wrote. Usage: `dvc exp show --json | python scripts/sweep_table.py [prefix]`
(only experiments whose name starts with `prefix`).

Columns: what the run changed from the baseline's params, all-S, the worst of all 2^N states and its drop from
all-S, the mean of the non-prefix mixed states minus all-S, how many states fall more than 1 point below all-S,
the worst step of the prefix order, distillation seconds per epoch, and (where loadsim ran) the mean accuracy
over the horizon of out-of-order loading (`pwl_parallel`) minus the prefix order, per device.
"""
import json
import re
import sys


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        out.update(flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def metric(metrics: dict, pattern: str) -> dict:
    """The data of the one metrics file whose path matches `pattern` (a regex), or {}."""
    hits = [v.get("data", {}) for k, v in metrics.items() if re.fullmatch(pattern, k)]
    return hits[0] if hits else {}


def rows_for(name: str, data: dict, base_params: dict) -> list[dict]:
    params = flatten(data["params"].get("params.yaml", {}).get("data", {}))
    metrics = data["metrics"]
    changed = [f"{k}={v}" for k, v in params.items()
               if k.startswith("arch.") and base_params.get(k) != v]
    out = []
    for arch in params.get("archs", []):
        ev = metric(metrics, rf"reports/[^/]+/metrics/{arch}/s\d+/eval\.json")
        pwl = metric(metrics, rf"reports/[^/]+/metrics/{arch}/s\d+/pwl\.json")
        if not ev or "lattice_test" not in ev:
            continue
        lat, all_s = ev["lattice_test"], 100 * ev["all_student_test"]
        row = {"run": name, "arch": arch, "changes": " ".join(changed) or "(baseline)",
               "all-S": f"{all_s:.2f}", "worst state": f"{lat['worst_state']} {100 * lat['worst']:.2f}",
               "worst - all-S": f"{100 * lat['worst_vs_all_S']:+.2f}",
               "non-prefix mean - all-S": f"{100 * lat['nonprefix_vs_all_S']:+.2f}",
               "states < all-S - 1": lat["below_all_S"], "worst prefix step": f"{100 * ev['prefix_worst_dip']:+.2f}",
               "s / epoch": f"{pwl['wall_s'] / pwl['epochs']:.0f}" if pwl else ""}
        gains = []
        for dev in ("lte", "sdcard", "emmc", "nvme"):
            ls = metric(metrics, rf"reports/[^/]+/loadsim/{arch}/{dev}/metrics\.json")
            s = ls.get("strategies", {})
            if "pwl_parallel" in s and "pwl_prefix" in s:
                gain = s["pwl_parallel"]["mean_acc_over_horizon"]["median"] - s["pwl_prefix"]["mean_acc_over_horizon"]["median"]
                gains.append(f"{dev} {gain:+.2f}")
        row["parallel - prefix (mean acc)"] = ", ".join(gains)
        out.append(row)
    return out


def main() -> None:
    prefix = sys.argv[1] if len(sys.argv) > 1 else ""
    commits = [c for c in json.load(sys.stdin) if c["rev"] != "workspace"]
    rows = []
    for commit in commits:
        base = flatten(commit["data"]["params"].get("params.yaml", {}).get("data", {}))
        exps = [rev for e in commit.get("experiments") or [] for rev in e["revs"]
                if (rev.get("name") or "").startswith(prefix) and rev.get("data")]
        swept = {a for rev in exps for a in flatten(rev["data"]["params"]["params.yaml"]["data"]).get("archs", [])}
        rows += [r for r in rows_for(f"baseline {commit['rev'][:7]}", commit["data"], base) if r["arch"] in swept]
        for rev in sorted(exps, key=lambda r: r["name"]):
            rows += rows_for(rev["name"], rev["data"], base)
    if not rows:
        sys.exit("no experiments with eval.json metrics found (run the sweep: see the README)")
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in sorted(rows, key=lambda r: (r["arch"], not r["run"].startswith("baseline"), r["run"])):
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
