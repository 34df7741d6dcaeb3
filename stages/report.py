"""Stage `report`: reports/README.md, figures and tables, from the pipeline's metrics, tables and curves."""
import pandas as pd

from pwl import paths
from pwl.env import environment
from pwl.report import figures, markdown, tables
from pwl.stage import main, setup, write_json


def run():
    params, _ = setup(__doc__, with_arch=False)
    fig_dir, tab_dir = paths.REPORTS / "figures", paths.REPORTS / "tables"
    fig_dir.mkdir(parents=True, exist_ok=True)
    tab_dir.mkdir(parents=True, exist_ok=True)
    summary = tables.summary(params.archs)
    summary.to_csv(tab_dir / "summary.csv", index=False, float_format="%.3f")
    per_arch, paper, curves, lattice_rows = {}, {}, {}, []
    for arch, row in zip(params.archs, summary.itertuples()):
        states, ev = tables.states(arch), tables.read_json(paths.metrics(arch, "eval"))
        orders = tables.orders(states)
        orders.to_csv(plot_file(tab_dir, "orders", arch), index=False, float_format="%.3f")
        figures.loading_orders(orders, row.teacher, row.scratch_student, arch, fig_dir / f"{arch}_loading.png")
        family = params.arch[arch].teacher.family
        labels = tables.label_table(states, tables.REFERENCE, family)
        labels.to_csv(tab_dir / f"labels_{arch}.csv", index=False, float_format="%.2f")
        lattice_rows += tables.lattice(arch, states, tables.REFERENCE, family)
        with_bytes, front = tables.pareto(arch)
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
        curves[arch] = {role: tables.curve(arch, role) for role in ("teacher", "student", "kd", "pwl")
                        if paths.live_dir(arch, role).exists()}
        scores = pd.concat({role: df.set_index("step")["score"] for role, df in curves[arch].items()}, axis=1)
        scores.rename_axis("step").reset_index().to_csv(plot_file(tab_dir, "validation", arch), index=False)
    lattice = pd.DataFrame(lattice_rows)
    lattice.to_csv(tab_dir / "lattice.csv", index=False, float_format="%.2f")
    figures.training_curves(curves, fig_dir / "training_curves.png")
    loadsim = {}
    if params.loadsim is not None:
        for arch, row in zip(params.archs, summary.itertuples()):
            table, dev_curves = tables.loadsim(arch, params.loadsim.profiles)
            table.to_csv(tab_dir / f"loadsim_{arch}.csv", index=False)
            figures.loadsim_curves(arch, dev_curves, row.pwl_all_T, fig_dir / f"{arch}_loadsim.png")
            loadsim[arch] = table
    ours = {r["arch"]: r for r in lattice_rows if r["source"] == "ours"}
    write_json(paths.REPORTS / "summary.json", tables.key_metrics(summary, loadsim_metrics(params), ours))
    walls = tables.wall_times(params.archs, params.loadsim.profiles if params.loadsim else ())
    walls.to_csv(tab_dir / "wall_times.csv", index=False, float_format="%.1f")
    text = markdown.build(params, environment(), summary, per_arch, walls, paper, loadsim, lattice)
    (paths.REPORTS / "README.md").write_text(text)
    print(summary.to_string(index=False))


def plot_file(tab_dir, plot: str, arch: str):
    """One file per arch in a folder per plot: dvc.yaml's plots name the folders, never an arch."""
    (tab_dir / plot).mkdir(exist_ok=True)
    return tab_dir / plot / f"{arch}.csv"


def loadsim_metrics(params) -> dict:
    if params.loadsim is None:
        return {}
    return {arch: {dev: tables.read_json(paths.loadsim_dir(arch, dev) / "metrics.json")
                   for dev in params.loadsim.profiles} for arch in params.archs}


if __name__ == "__main__":
    main(run)
