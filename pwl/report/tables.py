"""Tables for the report, computed only from files the pipeline wrote (metrics JSON, states CSV, DVCLive TSV)."""
import json
from pathlib import Path
from typing import Optional

import pandas as pd

from .. import budget, paths
from ..states import LATTICE_MARGIN, STUDENT, label, lattice_summary, prefix_order, suffix_order

# What the default profile must show (issue #2): the phenomenon of the paper, per arch.
MIN_TEACHER_GAP = 1.0  # teacher beats the scratch student by at least this many points
MAX_STUDENT_DEFICIT = 1.0  # the PWL all-S state is at most this many points below the scratch student
MAX_PREFIX_DIP = 0.5  # a drop larger than this along the prefix order is reported
REFERENCE = Path("reference/paper_loading_orders.csv")  # the paper's published loading-order table
PAPER_CITATION = ("Kim et al., arXiv 2509.22319v2 (1 Oct 2025), its prefix, suffix and contiguous loading-order "
                  "tables (table numbers unknown to us: we hold the published values, not the paper's body; "
                  "reference/README.md)")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def arch_results(name: str, arch: str, seed) -> dict:
    return {role: read_json(paths.metrics(name, arch, role, seed)) for role in ("teacher", "student", "pwl", "eval")}


def summary(name: str, archs: list[str], seed) -> pd.DataFrame:
    """One row per arch for one training replica: the three criteria of the default profile, in test
    accuracy points."""
    rows = []
    for arch in archs:
        r = arch_results(name, arch, seed)
        t, s, ev = 100 * r["teacher"]["test_acc"], 100 * r["student"]["test_acc"], r["eval"]
        all_s, all_t, dip = 100 * ev["all_student_test"], 100 * ev["all_teacher_test"], 100 * ev["prefix_worst_dip"]
        kd_file = paths.metrics(name, arch, "kd", seed)
        kd = 100 * read_json(kd_file)["test_acc"] if kd_file.exists() else None
        rows.append({"arch": arch, "teacher": t, "scratch_student": s, "teacher_gap": t - s, "kd_student": kd,
                     "pwl_all_S": all_s, "pwl_vs_scratch": all_s - s,
                     "pwl_vs_kd": None if kd is None else all_s - kd, "pwl_all_T": all_t,
                     "prefix_worst_dip": dip, "prefix_mean": 100 * ev["prefix_mean"]["test"],
                     "distill_s_per_epoch": r["pwl"]["wall_s"] / r["pwl"]["epochs"],
                     "gap_ok": t - s >= MIN_TEACHER_GAP, "student_ok": all_s - s >= -MAX_STUDENT_DEFICIT,
                     "prefix_ok": dip >= -MAX_PREFIX_DIP})
    return pd.DataFrame(rows)


def states(name: str, arch: str, seed) -> pd.DataFrame:
    df = pd.read_csv(paths.states_table(name, arch, seed), dtype={"state": str})
    df[["val_acc", "test_acc"]] *= 100
    return df


def orders(states_df: pd.DataFrame) -> pd.DataFrame:
    """Prefix and suffix orders side by side, indexed by the number of teacher blocks loaded."""
    df = states_df.set_index("state")
    n = len(df.index[0])
    return pd.DataFrame({"teacher_blocks": range(n + 1),
                         "prefix_state": prefix_order(n), "prefix_test_acc": df.loc[prefix_order(n), "test_acc"].values,
                         "suffix_state": suffix_order(n), "suffix_test_acc": df.loc[suffix_order(n), "test_acc"].values})


REPLICA_STAGES = (("teacher", "train_teacher"), ("student", "train_student"), ("kd", "kd"), ("pwl", "distill"),
                  ("eval", "evaluate"))


def wall_times(name: str, archs: list[str], seeds: list[int], devices: list[str] = ()) -> pd.DataFrame:
    """Each stage's own wall time (process start to end, imports included) and where it ran, as the stage
    recorded it (training stages: device and number of DDP processes); stage names as dvc.yaml makes them."""
    rows = [{"stage": "prepare", "wall_s": read_json(paths.prepare_metrics(name))["wall_s"], "ran_on": "cpu"}]
    for arch in archs:
        files = [(f"{stage}@{arch}-{seed}", paths.metrics(name, arch, role, seed))
                 for seed in seeds for role, stage in REPLICA_STAGES]
        for stage, f in files + [(f"export@{arch}", paths.arch_metrics(name, arch, "export.json"))]:
            if f.exists():
                m = read_json(f)
                where = m.get("device", "cpu") + (f" x{m['world_size']}" if m.get("world_size", 1) > 1 else "")
                rows.append({"stage": stage, "wall_s": m["wall_s"], "ran_on": where})
        for dev in devices:
            m = read_json(paths.loadsim_dir(name, arch, dev) / "metrics.json")
            rows.append({"stage": f"loadsim@{arch}-{dev}", "wall_s": m["wall_s"], "ran_on": f"cpu ({dev} profile)"})
    return pd.DataFrame(rows)


def curve(name: str, arch: str, role: str, seed, metric: str = "val/score") -> pd.DataFrame:
    """A DVCLive per-epoch series (step 0 = epoch 1)."""
    tsv = paths.live_dir(name, arch, role, seed) / "plots" / "metrics" / f"{metric}.tsv"
    return pd.read_csv(tsv, sep="\t")


def epochs_before(params, arch: str) -> dict[str, int]:
    """Per training role, the epochs its model had trained before its own run began: KD and PWL start from the
    scratch student's weights when `init_student: scratch`, so their curves continue that student's epochs."""
    d = params.arch[arch].distill
    start = params.arch[arch].train_student.epochs if d.init_student == "scratch" else 0
    return {"teacher": 0, "student": 0, "kd": start, "pwl": start}


def map_paper_state(paper_state: str, num_blocks: int) -> str:
    """The paper writes 4 positions for every family. Block j of N takes the owner of the position that
    contains its midpoint, floor((j + 0.5) * 4 / N): e.g. N=5 maps TTSS -> TTSSS and SSTS -> SSTTS."""
    return "".join(paper_state[min(3, int((j + 0.5) * 4 / num_blocks))] for j in range(num_blocks))


def paper_prefix(ref: pd.DataFrame) -> pd.DataFrame:
    """The published prefix table's rows of a paper_comparison table, indexed by the paper's order."""
    return ref[ref.table == "prefix"].set_index("paper_order")


def paper_gains(ref: pd.DataFrame) -> dict[str, float]:
    """Per paper dataset, all-T minus all-S of the published prefix table (each table's own cells)."""
    prefix = paper_prefix(ref)
    return {c: prefix.loc["TTTT", f"paper_{c}"] - prefix.loc["SSSS", f"paper_{c}"] for c in PAPER_DATASETS}


FLAG_POINTS = 1.5  # cells that differ from the paper by more than this are flagged


PAPER_DATASETS = ("cifar10", "cifar100")


def paper_columns(reference_csv: Path, family: str) -> Optional[dict[str, str]]:
    """dataset -> column of the published table for `family`, or None when the paper has no such family."""
    cols = {ds: f"{family}_{ds}" for ds in PAPER_DATASETS}
    return cols if set(cols.values()) <= set(pd.read_csv(reference_csv, nrows=0).columns) else None


def paper_comparison(reference_csv: Path, family: str, dataset: str,
                     states_df: pd.DataFrame) -> Optional[pd.DataFrame]:
    """Every published cell (prefix / suffix / contiguous tables) beside our state it maps to. Differences
    and flags only where our dataset is the paper's (cifar10 / cifar100). None when the paper publishes no
    column for `family` (the report says so instead)."""
    if paper_columns(reference_csv, family) is None:
        return None
    ref = pd.read_csv(reference_csv)
    ours = states_df.set_index("state")["test_acc"]
    n = len(ours.index[0])
    rows = []
    own_all_s = ref[ref["order"] == "SSSS"].set_index("table")  # each published table's own all-S cell
    for _, r in ref.iterrows():
        state = map_paper_state(r["order"], n)
        row = {"table": r["table"], "paper_order": r["order"], "our_state": state, "ours": ours[state],
               "ours_vs_all_S": ours[state] - ours["S" * n],
               "paper_cifar10": r[f"{family}_cifar10"], "paper_cifar100": r[f"{family}_cifar100"]}
        for ds in PAPER_DATASETS:  # against the same table's all-S: the drop comparable across setups
            row[f"paper_{ds}_vs_all_S"] = r[f"{family}_{ds}"] - own_all_s.loc[r["table"], f"{family}_{ds}"]
        if dataset in ("cifar10", "cifar100"):
            row["diff"] = row["ours"] - row[f"paper_{dataset}"]
            row["flag"] = "!" if abs(row["diff"]) > FLAG_POINTS else ""
        rows.append(row)
    return pd.DataFrame(rows)


LABELS = ("student", "prefix", "suffix", "contiguous", "other", "teacher")
BELOW_ALL_S = 100 * LATTICE_MARGIN  # points: a state more than this below all-S is counted (pwl.states)


def lattice_stats(acc: pd.Series) -> dict:
    """states.lattice_summary (the one definition of the worst state, "non-prefix" and "below all-S") over a
    state -> test accuracy (%) series, in points."""
    summ = lattice_summary({s: float(a) / 100 for s, a in acc.items()})
    all_s, worst = float(acc["S" * len(acc.index[0])]), float(acc[summ["worst_state"]])
    mean = None if summ["nonprefix_mixed_mean"] is None else 100 * summ["nonprefix_mixed_mean"]
    return {"states": len(acc), "all_S": all_s, "worst_state": summ["worst_state"], "worst": worst,
            "worst_vs_all_S": worst - all_s, "below_all_S_minus_1": summ["below_all_S"],
            "nonprefix_mixed_mean": mean, "nonprefix_vs_all_S": None if mean is None else mean - all_s}


def paper_states(reference_csv: Path, column: str) -> pd.Series:
    """The published states (4 positions) -> accuracy, each state once: where the tables repeat a state
    (all-S, all-T) the first table's cell (prefix) is taken."""
    ref = pd.read_csv(reference_csv)
    return ref.drop_duplicates("order").set_index("order")[column].astype(float)


def label_table(states_df: pd.DataFrame, reference_csv: Optional[Path] = None,
                family: Optional[str] = None) -> pd.DataFrame:
    """Per label: our number of states, min and mean test accuracy, and the paper's min / mean over its
    published states of the same label (labelled on its own 4 positions) per dataset, when it has the family."""
    ours = states_df.set_index("state")["test_acc"]
    by_label = ours.groupby(ours.index.map(label))
    cols = paper_columns(reference_csv, family) if reference_csv is not None and family else None
    paper = {ds: paper_states(reference_csv, col) for ds, col in (cols or {}).items()}
    all_s = ours[STUDENT * len(ours.index[0])]
    rows = []
    for lab in LABELS:
        mean = by_label.mean().get(lab)
        row = {"label": lab, "states": int(by_label.size().get(lab, 0)),
               "min": by_label.min().get(lab), "mean": mean, "mean_vs_all_S": None if mean is None else mean - all_s}
        for ds, acc in paper.items():  # drops comparable across datasets; absolute values are not
            sel = acc[acc.index.map(label) == lab]
            paper_all_s = acc[STUDENT * len(acc.index[0])]
            row[f"paper_{ds}_states"] = len(sel)
            row[f"paper_{ds}_min"] = sel.min() if len(sel) else None
            row[f"paper_{ds}_mean"] = sel.mean() if len(sel) else None
            row[f"paper_{ds}_mean_vs_all_S"] = sel.mean() - paper_all_s if len(sel) else None
        rows.append(row)
    return pd.DataFrame(rows)


def lattice(arch: str, states_df: pd.DataFrame, reference_csv: Path, family: str) -> list[dict]:
    """Ours and, where published, the paper's lattice statistics (one row per source)."""
    rows = [{"arch": arch, "source": "ours", **lattice_stats(states_df.set_index("state")["test_acc"])}]
    for ds, col in (paper_columns(reference_csv, family) or {}).items():
        rows.append({"arch": arch, "source": f"paper {family} {ds}", **lattice_stats(paper_states(reference_csv, col))})
    return rows


def pareto(name: str, arch: str, seed) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every state with its weight bytes and accuracies (%), and the (bytes, test accuracy) Pareto front."""
    table = budget.load(name, arch, seed)
    table[["val_acc", "test_acc"]] *= 100
    return table, budget.pareto_front(table, "bytes", "test_acc")


def loadsim(name: str, arch: str, devices: list[str]) -> tuple[pd.DataFrame, dict]:
    """Per device and strategy: medians [min-max] of the load-time metrics, the physical limit of the first
    answer, the modelled times, and (columns starting with `_`, for the text) the breakdown of the first answer."""
    rows, curves = [], {}
    for dev in devices:
        d = paths.loadsim_dir(name, arch, dev)
        m = read_json(d / "metrics.json")
        curves[dev] = pd.read_csv(d / "curves.csv")
        for strategy, s in m["strategies"].items():
            def ms(key):
                v = s[key]
                return None if v["median"] is None else f"{1e3 * v['median']:.1f} [{1e3 * v['min']:.1f}-{1e3 * v['max']:.1f}]"
            loaded = s["model_error_loaded"] is not None
            err = s["model_error_loaded"] if loaded else s["model_error_ttfa"]
            model_s = s["model_teacher_loaded_s"] if loaded else s["model_ttfa_s"]
            rows.append({"device": dev, "strategy": strategy, "TTFA ms": ms("ttfa_s"),
                         "limit ms": 1e3 * s["ttfa_limit_s"], "TTFA / limit": s["ttfa_over_limit"],
                         "to teacher acc ms": ms("time_to_teacher_acc_s") or "never",
                         "mean acc over horizon": s["mean_acc_over_horizon"]["median"],
                         "model mean acc": s.get("model_mean_acc_over_horizon"),
                         "horizon ms": 1e3 * m["horizon_s"],
                         "TTFA ratio (teacher/PWL)": f"{m['ttfa_ratio_teacher_over_pwl']:.2f}" if strategy == "pwl_prefix" else "",
                         "model ms": 1e3 * model_s, "measured vs model": "" if err is None else f"{100 * err:+.0f}%",
                         "model_err": err, "_spread": spread_ratio(s), "_ttfa_ms": 1e3 * s["ttfa_s"]["median"],
                         **{f"_{k}": 1e3 * v for k, v in s["first_answer_breakdown_s"].items()},
                         "_floor_ms": 1e3 * s["floor_ttfa_s"],
                         **({f"_cold_{k[:-2]}_ms": 1e3 * v for k, v in m["cold_launch"].items()}
                            if strategy == "pwl_prefix" and "cold_launch" in m else {}),
                         "_read_ahead_ms": None if s["read_ahead_s"]["min"] is None else 1e3 * s["read_ahead_s"]["min"],
                         "_request_delay_ms": 1e3 * s["max_request_delay_s"]["max"],
                         "_max_turn_ms": 1e3 * s["max_loader_turn_s"]["max"]})
    return pd.DataFrame(rows), curves


def first_answer(loadsim: dict) -> pd.DataFrame:
    """Where the time to PWL's first answer goes, per arch and device (medians, ms): tables/first_answer.csv.
    `loadsim`: arch -> its `loadsim` table, whose `_<step>_s` columns are the runtime's breakdown, in its order."""
    rows = []
    for arch, table in loadsim.items():
        steps = [c for c in table.columns if c.startswith("_") and c.endswith("_s")]
        for _, r in table[table["strategy"] == "pwl_prefix"].iterrows():
            rows.append({"arch": arch, "device": r["device"], **{c[1:-2]: r[c] for c in steps},
                         "TTFA": r["_ttfa_ms"], "limit": r["limit ms"], "over limit": r["_ttfa_ms"] - r["limit ms"],
                         "unthrottled TTFA": r["_floor_ms"], "cold launch": r.get("_cold_first_answer_ms"),
                         "of it imports": r.get("_cold_imports_ms")})
    return pd.DataFrame(rows)


def spread_ratio(strategy: dict) -> float:
    """Largest max / median over the TTFA and time-to-teacher-accuracy cells: 1 = every repeat alike."""
    cells = [strategy[k] for k in ("ttfa_s", "time_to_teacher_acc_s") if strategy[k]["median"]]
    return max(c["max"] / c["median"] for c in cells)


def key_metrics(summary: pd.DataFrame, loadsim: dict, lattices: Optional[dict] = None) -> dict:
    """The few numbers `dvc exp show` should show per arch (reports/summary.json)."""
    out = {}
    for row in summary.itertuples():
        out[row.arch] = {"teacher": round(row.teacher, 2), "student": round(row.scratch_student, 2),
                         **({} if pd.isna(row.kd_student) else {"kd": round(row.kd_student, 2)}),
                         "pwl_all_S": round(row.pwl_all_S, 2), "prefix_mean": round(row.prefix_mean, 2),
                         "prefix_dip": round(row.prefix_worst_dip, 2),
                         "distill_s_per_epoch": round(row.distill_s_per_epoch, 1)}
        lat = (lattices or {}).get(row.arch)
        if lat:
            out[row.arch]["worst_state"] = round(lat["worst"], 2)
            if lat["nonprefix_mixed_mean"] is not None:
                out[row.arch]["nonprefix_mean"] = round(lat["nonprefix_mixed_mean"], 2)
        for dev, m in loadsim.get(row.arch, {}).items():
            out[row.arch][f"ttfa_ratio_{dev}"] = round(m["ttfa_ratio_teacher_over_pwl"], 2)
    return out


def paper_inconsistencies(reference_csv: Path) -> list[str]:
    """The published all-S / all-T cells appear in every table; where the tables disagree, say so."""
    ref = pd.read_csv(reference_csv)
    notes = []
    for col in ref.columns[2:]:
        for state in ("SSSS", "TTTT"):
            vals = ref[ref["order"] == state].set_index("table")[col]
            if vals.nunique() > 1:
                notes.append(f"{col} {state}: " + ", ".join(f"{t} {v}" for t, v in vals.items()))
    return notes
