"""Stage `report`: reports/<name>/README.md, figures and tables, from the pipeline's metrics, tables and
curves; then the index of every report folder, reports/README.md."""
from datetime import datetime, timezone

import pandas as pd

from pwl import paths
from pwl.env import environment
from pwl.report import figures, index, markdown, seeds, tables
from pwl.stage_cli import main, setup, write_json


def run():
    params, _ = setup(__doc__, with_arch=False)
    profile, seed = params.profile, params.seed  # the stages wrote their files under the profile's folder
    out_dir = paths.report_dir(params.name)  # this report's own folder (the profile's, or a named variant's)
    fig_dir, tab_dir = out_dir / "figures", out_dir / "tables"
    fig_dir.mkdir(parents=True, exist_ok=True)
    tab_dir.mkdir(parents=True, exist_ok=True)
    by_seed = {s: tables.summary(profile, params.archs, s) for s in params.seeds}  # one row per arch, per replica
    summary = by_seed[seed]
    summary.to_csv(tab_dir / "summary.csv", index=False, float_format="%.3f")
    per_arch, paper, curves, lattice_rows = {}, {}, {}, []
    for arch, row in zip(params.archs, summary.itertuples()):
        states, ev = tables.states(profile, arch, seed), tables.read_json(paths.metrics(profile, arch, "eval", seed))
        orders = tables.orders(states)
        orders.to_csv(plot_file(tab_dir, "orders", arch), index=False, float_format="%.3f")
        figures.loading_orders(orders, row.teacher, row.scratch_student, arch, fig_dir / f"{arch}_loading.png")
        family = params.arch[arch].teacher.family
        labels = tables.label_table(states, tables.REFERENCE, family)
        labels.to_csv(tab_dir / f"labels_{arch}.csv", index=False, float_format="%.2f")
        lattice_rows += tables.lattice(arch, states, tables.REFERENCE, family)
        with_bytes, front = tables.pareto(profile, arch, seed)
        front.to_csv(tab_dir / f"pareto_{arch}.csv", index=False, float_format="%.2f")
        figures.pareto(arch, with_bytes, front, fig_dir / f"{arch}_pareto.png")
        per_arch[arch] = {**ev, "orders": orders, "states": states, "labels": labels, "pareto": front,
                          "family": family}
        ref = tables.paper_comparison(tables.REFERENCE, family, params.data.dataset, states)
        if ref is None:  # a family the paper does not publish: the report says so
            paper[arch] = None
        else:
            ref.to_csv(tab_dir / f"paper_{arch}.csv", index=False, float_format="%.2f")
            prefix = ref[ref.table == "prefix"].set_index("paper_order")
            gains = {c: prefix.loc["TTTT", f"paper_{c}"] - prefix.loc["SSSS", f"paper_{c}"]
                     for c in tables.PAPER_DATASETS}
            paper[arch] = {"table": ref, "paper_gain": gains, "our_gain": row.pwl_all_T - row.pwl_all_S}
        curves[arch] = {role: tables.curve(profile, arch, role, seed) for role in ("teacher", "student", "kd", "pwl")
                        if paths.live_dir(profile, arch, role, seed).exists()}
        scores = pd.concat({role: df.set_index("step")["score"] for role, df in curves[arch].items()}, axis=1)
        scores.rename_axis("step").reset_index().to_csv(plot_file(tab_dir, "validation", arch), index=False)
    lattice = pd.DataFrame(lattice_rows)
    lattice.to_csv(tab_dir / "lattice.csv", index=False, float_format="%.2f")
    figures.training_curves(curves, fig_dir / "training_curves.png")
    seed_tables = replicas(params, by_seed, tab_dir)
    loadsim = {}
    if params.loadsim is not None:
        for arch, row in zip(params.archs, summary.itertuples()):
            table, dev_curves = tables.loadsim(profile, arch, params.loadsim.simulate)
            table.to_csv(tab_dir / f"loadsim_{arch}.csv", index=False)
            figures.loadsim_curves(arch, dev_curves, row.pwl_all_T, fig_dir / f"{arch}_loadsim.png")
            loadsim[arch] = table
    ours = {r["arch"]: r for r in lattice_rows if r["source"] == "ours"}
    env, prepared = environment(), tables.read_json(paths.prepare_metrics(profile))
    write_json(out_dir / "summary.json", {"run": run_record(params, env, prepared),
                                          **tables.key_metrics(summary, loadsim_metrics(params), ours)})
    walls = tables.wall_times(profile, params.archs, params.seeds, params.loadsim.simulate if params.loadsim else ())
    walls.to_csv(tab_dir / "wall_times.csv", index=False, float_format="%.1f")
    text = markdown.build(params, env, summary, per_arch, walls, paper, loadsim, lattice, seed_tables,
                          prepared["source"])
    (out_dir / "README.md").write_text(text)
    paths.INDEX.write_text(index.build(paths.REPORTS))
    print(summary.to_string(index=False))


def replicas(params, by_seed: dict, tab_dir) -> dict:
    """Per arch: (cells as mean/std/n over seeds, paired differences with significance); written as CSV.
    `by_seed`: each replica's summary table (one row per arch)."""
    out = {}
    for i, arch in enumerate(params.archs):
        per_seed = pd.DataFrame({
            s: seeds.replica_cells(by_seed[s].iloc[i].to_dict(), tables.states(params.profile, arch, s))
            for s in params.seeds}).T
        cells, diffs = seeds.aggregate(per_seed), seeds.compare(per_seed)
        cells.to_csv(tab_dir / f"seeds_{arch}.csv", index=False, float_format="%.3f")
        diffs.to_csv(tab_dir / f"seed_differences_{arch}.csv", index=False, float_format="%.3f")
        out[arch] = (cells, diffs)
    return out


def run_record(params, env: dict, prepared: dict) -> dict:
    """What the index says of this report: where its data came from, when, and from which code."""
    return {"profile": params.profile, "name": params.name, "dataset": prepared["dataset"],
            "source": prepared["source"], "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "git_rev": env["git_rev"], "seeds": params.seeds}


def plot_file(tab_dir, plot: str, arch: str):
    """One file per arch in a folder per plot: dvc.yaml's plots name the folders, never an arch."""
    (tab_dir / plot).mkdir(exist_ok=True)
    return tab_dir / plot / f"{arch}.csv"


def loadsim_metrics(params) -> dict:
    if params.loadsim is None:
        return {}
    return {arch: {dev: tables.read_json(paths.loadsim_dir(params.profile, arch, dev) / "metrics.json")
                   for dev in params.loadsim.simulate} for arch in params.archs}


if __name__ == "__main__":
    main(run)
