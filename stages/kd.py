"""Stage `kd@arch`: vanilla knowledge distillation (Hinton: hard + soft terms only) with PWL's own budget,
initialisation, alpha and temperature: the control that tells what PWL's alignment terms cost the student."""
import torch

from pwl import paths
from pwl.build import build, freeze, init_student
from pwl.checkpoints import fingerprint, load_weights, save_weights
from pwl.compute import make_compute
from pwl.data import Normalizer, load_prepared
from pwl.losses import hard_loss, soft_loss
from pwl.stage import elapsed, epoch_logger, main, setup, training_done, write_json
from pwl.train import accuracy, fit


def run():
    params, args = setup(__doc__)
    cfg = params.for_arch(args.arch)
    d, bs = cfg.distill, params.eval.batch_size
    ds = load_prepared(paths.DATA)
    compute = make_compute(params.compute)
    norm = Normalizer(ds.manifest["mean"], ds.manifest["std"])
    teacher, student = freeze(build(cfg.teacher, ds)), build(cfg.student, ds)
    load_weights(paths.weights(args.arch, "teacher"), teacher)
    init_student(student, args.arch, cfg)
    teacher, student = compute.module(teacher), compute.module(student)
    train, val, test = (compute.split(s) for s in (ds.train, ds.val, ds.test))
    a, T = d.loss.alpha, d.loss.temperature

    def loss_fn(x, y, progress):
        with torch.no_grad():
            z_t = teacher(x)
        z = student(x)
        hard, soft = a * hard_loss(z, y), (1 - a) * soft_loss(z, z_t, T)
        return hard + soft, {"hard": hard.detach(), "soft": soft.detach()}, z

    with epoch_logger(paths.live_dir(args.arch, "kd"), compute.is_main) as on_epoch:
        result = fit(trainable=student, param_groups=[{"params": student.parameters()}], loss_fn=loss_fn,
                     score_fn=lambda: {"score": accuracy(student, val, norm, bs, compute)}, train=train, norm=norm,
                     optim_cfg=d.optim, aug_cfg=params.augment, ckpt_path=paths.resume_checkpoint(args.arch, "kd"),
                     seed=params.seed, fingerprint=fingerprint(cfg.teacher, cfg.student, d.optim, d.init_student, a,
                                                               T, params.augment, params.seed, ds.manifest["splits"]),
                     on_epoch=on_epoch, desc=f"{args.arch}/kd", compute=compute)
    if not compute.is_main:
        return
    save_weights(paths.weights(args.arch, "kd"), student.state_dict(),
                 {"arch": args.arch, "role": "kd", "model": cfg.student.model_dump(mode="json")})
    write_json(paths.metrics(args.arch, "kd"), {
        "val_acc": result.best_score, "test_acc": accuracy(student, test, norm, bs, compute),
        "best_epoch": result.best_epoch, "epochs": d.optim.epochs, "init_student": d.init_student,
        "resumed_from_epoch": result.resumed_from,
        **compute.record, "wall_s": elapsed()})
    training_done(paths.resume_checkpoint(args.arch, "kd"))


if __name__ == "__main__":
    main(run)
