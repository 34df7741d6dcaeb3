"""Stage `distill@arch`: PWL distillation of the block-aligned student and converters from the frozen teacher.
Runs under torchrun too (DDP over the student and converters)."""
import random

from pwl import paths
from pwl.build import build_mixed, distilled_parts, freeze, init_student
from pwl.checkpoints import fingerprint, load_weights, save_weights
from pwl.compute import make_compute
from pwl.data import Normalizer, load_prepared
from pwl.evaluation import state_accuracies
from pwl.losses import pwl_loss
from pwl.stage import elapsed, epoch_logger, main, setup, training_done, write_json
from pwl.states import prefix_order
from pwl.train import fit


def run():
    params, args = setup(__doc__)
    cfg = params.for_arch(args.arch)
    dcfg = cfg.distill
    ds = load_prepared(paths.DATA)
    compute = make_compute(params.compute)
    norm = Normalizer(ds.manifest["mean"], ds.manifest["std"])
    mixed = build_mixed(cfg, ds)
    load_weights(paths.weights(args.arch, "teacher"), mixed.teacher)
    freeze(mixed.teacher)
    init_student(mixed.student, args.arch, cfg)
    compute.module(mixed)
    train, val = compute.split(ds.train), compute.split(ds.val)
    parts = distilled_parts(mixed)
    lr = dcfg.optim.lr
    groups = [{"params": mixed.student.parameters(), "lr": lr},
              {"params": mixed.converters.parameters(), "lr": lr * dcfg.converter_lr_scale}]
    prefix = prefix_order(mixed.num_blocks)
    rng = random.Random(params.seed)

    def score_fn():
        acc = state_accuracies(mixed, prefix, val, norm, params.eval.batch_size, compute)
        student = acc[prefix[0]]
        mean = sum(acc[s] for s in prefix[:-1]) / (len(prefix) - 1)  # all-T is the fixed teacher
        return {"score": student if dcfg.select_on == "student" else mean, "student_acc": student,
                "prefix_mean": mean}

    with epoch_logger(paths.live_dir(args.arch, "pwl"), compute.is_main) as on_epoch:
        result = fit(trainable=parts, param_groups=groups,
                     loss_fn=lambda x, y, progress: pwl_loss(mixed, x, y, dcfg.loss, rng, progress),
                     score_fn=score_fn, train=train, norm=norm, optim_cfg=dcfg.optim, aug_cfg=params.augment,
                     ckpt_path=paths.resume_checkpoint(args.arch, "pwl"), seed=params.seed, py_rng=rng,
                     fingerprint=fingerprint(cfg, params.augment, params.seed, ds.manifest["splits"]),
                     on_epoch=on_epoch, desc=f"{args.arch}/pwl", compute=compute,
                     find_unused_parameters=dcfg.loss.cross_mode == "random")
    if not compute.is_main:
        return
    save_weights(paths.weights(args.arch, "pwl"), parts.state_dict(),
                 {"arch": args.arch, "role": "pwl", "teacher": cfg.teacher.model_dump(mode="json"),
                  "student": cfg.student.model_dump(mode="json")})
    write_json(paths.metrics(args.arch, "pwl"), {
        "val_score": result.best_score, "select_on": dcfg.select_on, "best_epoch": result.best_epoch,
        "epochs": dcfg.optim.epochs, "resumed_from_epoch": result.resumed_from,
        "converter_params": sum(p.numel() for p in mixed.converters.parameters()),
        **compute.record, "wall_s": elapsed()})
    training_done(paths.resume_checkpoint(args.arch, "pwl"))


if __name__ == "__main__":
    main(run)
