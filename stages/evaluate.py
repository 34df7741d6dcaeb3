"""Stage `evaluate@arch`: accuracy of every one of the 2^N loading states on val and test, plus block sizes."""
import pandas as pd

from pwl import paths
from pwl.atomic import atomic_write
from pwl.compute import make_compute, seed_and_threads
from pwl.data import Normalizer, load_prepared
from pwl.evaluation import block_bytes
from pwl.mixing import load_trained_mixed, state_accuracies
from pwl.stage_cli import elapsed, main, setup, write_json
from pwl.states import TEACHER, all_states, label, lattice_summary, prefix_mean, prefix_order, suffix_order


def run():
    params, args = setup(__doc__, replica=True)
    seed_and_threads(params)
    cfg = params.for_arch(args.arch)
    ds = load_prepared(paths.DATA)
    norm = Normalizer(ds.manifest["mean"], ds.manifest["std"])
    compute = make_compute(params.compute)  # state_accuracies runs in float32 whatever `compute.amp` says
    mixed = compute.module(load_trained_mixed(args.arch, cfg, ds, params.seed))
    states = all_states(mixed.num_blocks)
    acc = {split: state_accuracies(mixed, states, compute.split(getattr(ds, split)), norm, params.eval.batch_size,
                                   compute) for split in ("val", "test")}
    table = pd.DataFrame({"state": states, "label": [label(s) for s in states],
                          "teacher_blocks": [s.count(TEACHER) for s in states],
                          "val_acc": [acc["val"][s] for s in states], "test_acc": [acc["test"][s] for s in states]})
    atomic_write(paths.states_table(params.profile, args.arch, params.seed),
                 lambda tmp: table.to_csv(tmp, index=False, float_format="%.5f"))
    test = acc["test"]
    prefix, suffix = prefix_order(mixed.num_blocks), suffix_order(mixed.num_blocks)
    steps = [test[b] - test[a] for a, b in zip(prefix, prefix[1:])]
    write_json(paths.metrics(params.profile, args.arch, "eval", params.seed), {
        "num_blocks": mixed.num_blocks, "all_student_test": test[prefix[0]], "all_teacher_test": test[prefix[-1]],
        "prefix_test": {s: test[s] for s in prefix}, "suffix_test": {s: test[s] for s in suffix},
        # the same score distill selects on (select_on: prefix_mean): the states served before all-T
        "prefix_mean": {split: prefix_mean(acc[split], mixed.num_blocks) for split in ("val", "test")},
        "prefix_worst_dip": min(0.0, min(steps)),
        "lattice_test": lattice_summary(test),  # every state, not just the prefix order (the lattice mode's targets)
        "teacher_params": sum(p.numel() for p in mixed.teacher.parameters()),
        "student_params": sum(p.numel() for p in mixed.student.parameters()),
        "converter_params": sum(p.numel() for p in mixed.converters.parameters()),
        "teacher_block_bytes": block_bytes(mixed.teacher), "student_block_bytes": block_bytes(mixed.student),
        **compute.record, "wall_s": elapsed()})


if __name__ == "__main__":
    main(run)
