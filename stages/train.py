"""Stages `train_teacher@arch` and `train_student@arch`: cross-entropy training from scratch (or from
pretrained weights where the model config names them), best epoch on val. Runs under torchrun too (DDP)."""
import torch.nn.functional as F

from pwl import paths
from pwl.build import build
from pwl.checkpoints import fingerprint, save_weights
from pwl.compute import make_compute
from pwl.data import Normalizer, load_prepared
from pwl.models import init_pretrained
from pwl.stage import elapsed, epoch_logger, main, setup, training_done, write_json
from pwl.train import accuracy, fit


def run():
    params, args = setup(__doc__, roles=("teacher", "student"))
    role = args.role
    cfg = params.for_arch(args.arch)
    model_cfg, optim = (cfg.teacher, cfg.train_teacher) if role == "teacher" else (cfg.student, cfg.train_student)
    ds = load_prepared(paths.DATA)
    compute = make_compute(params.compute)
    norm = Normalizer(ds.manifest["mean"], ds.manifest["std"])
    model = build(model_cfg, ds)
    pretrained = init_pretrained(model, model_cfg)  # before any work: an unreachable download stops here
    model = compute.module(model)
    train, val, test = (compute.split(s) for s in (ds.train, ds.val, ds.test))
    bs = params.eval.batch_size

    def loss_fn(x, y, progress):
        logits = model(x)
        return F.cross_entropy(logits, y), {}, logits

    with epoch_logger(paths.live_dir(args.arch, role), compute.is_main) as on_epoch:
        result = fit(trainable=model, param_groups=[{"params": model.parameters()}], loss_fn=loss_fn,
                     score_fn=lambda: {"score": accuracy(model, val, norm, bs, compute)},
                     train=train, norm=norm, optim_cfg=optim, aug_cfg=params.augment,
                     ckpt_path=paths.resume_checkpoint(args.arch, role), seed=params.seed,
                     fingerprint=fingerprint(model_cfg, optim, params.augment, params.seed, ds.manifest["splits"]),
                     on_epoch=on_epoch, desc=f"{args.arch}/{role}", compute=compute)
    if not compute.is_main:
        return
    save_weights(paths.weights(args.arch, role), model.state_dict(),
                 {"arch": args.arch, "role": role, "model": model_cfg.model_dump(mode="json")})
    write_json(paths.metrics(args.arch, role), {
        "val_acc": result.best_score, "test_acc": accuracy(model, test, norm, bs, compute),
        "best_epoch": result.best_epoch, "epochs": optim.epochs, "resumed_from_epoch": result.resumed_from,
        "params": sum(p.numel() for p in model.parameters()), "pretrained": pretrained,
        **compute.record, "wall_s": elapsed()})
    training_done(paths.resume_checkpoint(args.arch, role))


if __name__ == "__main__":
    main(run)
