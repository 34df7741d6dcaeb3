"""One report folder from the pipeline's files: README.md, tables/, figures/ (PNG + the data drawn, data.json)
and summary.json. A pure function of (params, run record, the stage outputs under reports/<profile>/): the
`report` stage calls it with the live run record, `python -m pwl.report --check` with the recorded one, into a
scratch folder, and compares."""
import json
import shutil
from pathlib import Path

import pandas as pd

from .. import paths
from ..atomic import atomic_write, replace_dir, staging_dir
from . import figures, markdown, seeds, tables, targets


def write(params, run: dict, out_dir: Path) -> pd.DataFrame:
    """Write the report of `params` into `out_dir`; `run` = provenance.record(): env, date, git_rev.
    Returns the summary table (one row per arch, replica `seed`)."""
    profile, seed = params.profile, params.seed  # the stages wrote their files under the profile's folder
    out_dir = Path(out_dir)
    work = staging_dir(out_dir / "report")  # figures/ and tables/ written aside, swapped in whole at the end:
    fig_dir, tab_dir = work / "figures", work / "tables"  # a failed or killed run keeps the last good ones
    fig_dir.mkdir()
    tab_dir.mkdir()
    env = run["env"]
    by_seed = {s: tables.summary(profile, params.archs, s) for s in params.seeds}  # one row per arch, per replica
    summary = by_seed[seed]
    prepared = tables.read_json(paths.prepare_metrics(profile))
    n_test = int(prepared["test"])  # test images: the n of every single accuracy's Wilson interval
    summary.to_csv(tab_dir / "summary.csv", index=False, float_format="%.3f")
    states_of = {(arch, s): tables.states(profile, arch, s) for arch in params.archs for s in params.seeds}
    seed_tables = replicas(params, by_seed, states_of, tab_dir)
    target_table = usable_states(params, by_seed, states_of)
    target_table.to_csv(tab_dir / "targets.csv", index=False, float_format="%.3f")
    per_arch, paper, curves, lattice_rows, drawn = {}, {}, {}, [], {}
    for arch, row in zip(params.archs, summary.itertuples()):
        states, ev = states_of[arch, seed], tables.read_json(paths.metrics(profile, arch, "eval", seed))
        orders = tables.orders(states)
        orders.to_csv(plot_file(tab_dir, "orders", arch), index=False, float_format="%.3f")
        spread = seed_tables[arch][0] if len(params.seeds) > 1 else None
        drawn[f"{arch}_loading"] = figures.loading_orders(orders, row, arch, n_test, spread,
                                                           fig_dir / f"{arch}_loading.png")
        family = params.arch[arch].teacher.family
        labels = tables.label_table(states, tables.REFERENCE, family)
        labels.to_csv(tab_dir / f"labels_{arch}.csv", index=False, float_format="%.2f")
        lattice_rows += tables.lattice(arch, states, tables.REFERENCE, family)
        with_bytes, front = tables.pareto(profile, arch, seed)
        front.to_csv(tab_dir / f"pareto_{arch}.csv", index=False, float_format="%.2f")
        drawn[f"{arch}_pareto"] = figures.pareto(arch, with_bytes, front, fig_dir / f"{arch}_pareto.png")
        per_arch[arch] = {**ev, "orders": orders, "states": states, "labels": labels, "pareto": front,
                          "family": family}
        ref = tables.paper_comparison(tables.REFERENCE, family, params.data.dataset, states)
        if ref is None:  # a family the paper does not publish: the report says so
            paper[arch] = None
        else:
            ref.to_csv(tab_dir / f"paper_{arch}.csv", index=False, float_format="%.2f")
            paper[arch] = {"table": ref, "paper_gain": tables.paper_gains(ref),
                           "our_gain": row.pwl_all_T - row.pwl_all_S}
        curves[arch] = {role: tables.curve(profile, arch, role, seed) for role in ("teacher", "student", "kd", "pwl")
                        if paths.live_dir(profile, arch, role, seed).exists()}
        scores = pd.concat({role: df.set_index("step")["score"] for role, df in curves[arch].items()}, axis=1)
        scores.rename_axis("step").reset_index().to_csv(plot_file(tab_dir, "validation", arch), index=False)
    lattice = pd.DataFrame(lattice_rows)
    lattice.to_csv(tab_dir / "lattice.csv", index=False, float_format="%.2f")
    epochs = {arch: tables.epochs_before(params, arch) for arch in params.archs}
    drawn["training_curves"] = figures.training_curves(curves, epochs, fig_dir / "training_curves.png")
    loadsim = {}
    if params.loadsim is not None:
        for arch, row in zip(params.archs, summary.itertuples()):
            table, dev_curves = tables.loadsim(profile, arch, params.loadsim.simulate)
            table.to_csv(tab_dir / f"loadsim_{arch}.csv", index=False)
            drawn[f"{arch}_loadsim"] = figures.loadsim_curves(arch, dev_curves, row, fig_dir / f"{arch}_loadsim.png")
            loadsim[arch] = table
        tables.first_answer(loadsim).to_csv(tab_dir / "first_answer.csv", index=False, float_format="%.2f")
    atomic_write(tab_dir / "figure_data.json", (json.dumps(drawn, indent=1, sort_keys=True, default=float) + "\n").encode())
    ours = {r["arch"]: r for r in lattice_rows if r["source"] == "ours"}
    record = {"profile": params.profile, "name": params.name, "dataset": prepared["dataset"],
              "source": prepared["source"], "date": run["date"], "git_rev": run["git_rev"], "seeds": params.seeds}
    key = tables.key_metrics(summary, loadsim_metrics(params), ours)
    atomic_write(out_dir / "summary.json", (json.dumps({"run": record, **key}, indent=2, default=float) + "\n").encode())
    walls = tables.wall_times(profile, params.archs, params.seeds, params.loadsim.simulate if params.loadsim else ())
    walls.to_csv(tab_dir / "wall_times.csv", index=False, float_format="%.1f")
    text = markdown.build(params, run, summary, per_arch, walls, paper, loadsim, lattice, seed_tables, prepared,
                          n_test, target_table)
    for sub in ("figures", "tables"):
        replace_dir(work / sub, out_dir / sub)
    shutil.rmtree(work)
    atomic_write(out_dir / "README.md", text.encode())
    return summary


def replicas(params, by_seed: dict, states_of: dict, tab_dir) -> dict:
    """Per arch: (cells as mean/std/n over seeds, paired differences with significance); written as CSV.
    `by_seed`: each replica's summary table (one row per arch); `states_of`: (arch, seed) -> its states table."""
    out = {}
    for i, arch in enumerate(params.archs):
        per_seed = pd.DataFrame({
            s: seeds.replica_cells(by_seed[s].iloc[i].to_dict(), states_of[arch, s])
            for s in params.seeds}).T
        cells, diffs = seeds.aggregate(per_seed), seeds.compare(per_seed)
        cells.to_csv(tab_dir / f"seeds_{arch}.csv", index=False, float_format="%.3f")
        diffs.to_csv(tab_dir / f"seed_differences_{arch}.csv", index=False, float_format="%.4f")
        out[arch] = (cells, diffs)
    return out


def usable_states(params, by_seed: dict, states_of: dict) -> pd.DataFrame:
    """The targets for every loading state usable (pwl.report.targets), per arch and replica, with their mean."""
    parts = []
    for i, arch in enumerate(params.archs):
        accs = {s: states_of[arch, s].set_index("state")["test_acc"] for s in params.seeds}
        scratch = {s: float(by_seed[s].iloc[i]["scratch_student"]) for s in params.seeds}
        parts.append(targets.table(arch, accs, scratch))
    return pd.concat(parts, ignore_index=True)


def plot_file(tab_dir, plot: str, arch: str):
    """One file per arch in a folder per plot: dvc.yaml's plots name the folders, never an arch."""
    (tab_dir / plot).mkdir(exist_ok=True)
    return tab_dir / plot / f"{arch}.csv"


def loadsim_metrics(params) -> dict:
    if params.loadsim is None:
        return {}
    return {arch: {dev: tables.read_json(paths.loadsim_dir(params.profile, arch, dev) / "metrics.json")
                   for dev in params.loadsim.simulate} for arch in params.archs}
