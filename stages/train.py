"""Stages `train_teacher@arch` and `train_student@arch`: cross-entropy training from scratch, best epoch on val."""
import torch.nn.functional as F
from dvclive import Live

from pwl import paths
from pwl.build import build
from pwl.checkpoints import fingerprint, save_weights
from pwl.data import Normalizer, load_prepared
from pwl.stage import elapsed, log_epoch, main, setup, write_json
from pwl.train import accuracy, fit


def run():
    params, args = setup(__doc__, roles=("teacher", "student"))
    role = args.role
    cfg = params.for_arch(args.arch)
    model_cfg, optim = (cfg.teacher, cfg.train_teacher) if role == "teacher" else (cfg.student, cfg.train_student)
    ds = load_prepared(paths.DATA)
    norm = Normalizer(ds.manifest["mean"], ds.manifest["std"])
    model = build(model_cfg, ds)
    bs = params.eval.batch_size

    def loss_fn(x, y, progress):
        logits = model(x)
        return F.cross_entropy(logits, y), {}, logits

    live = Live(str(paths.live_dir(args.arch, role)), save_dvc_exp=False, dvcyaml=None)
    result = fit(trainable=model, param_groups=[{"params": model.parameters()}], loss_fn=loss_fn,
                 score_fn=lambda: {"score": accuracy(model, ds.val, norm, bs)},
                 train=ds.train, norm=norm, optim_cfg=optim, aug_cfg=params.augment,
                 ckpt_path=paths.resume_checkpoint(args.arch, role), seed=params.seed,
                 fingerprint=fingerprint(model_cfg, optim, params.augment, params.seed, ds.manifest["splits"]),
                 on_epoch=lambda rec: log_epoch(live, rec), desc=f"{args.arch}/{role}")
    live.end()
    save_weights(paths.weights(args.arch, role), model.state_dict(),
                 {"arch": args.arch, "role": role, "model": model_cfg.model_dump(mode="json")})
    write_json(paths.metrics(args.arch, role), {
        "val_acc": result.best_score, "test_acc": accuracy(model, ds.test, norm, bs),
        "best_epoch": result.best_epoch, "epochs": optim.epochs, "resumed_from_epoch": result.resumed_from,
        "params": sum(p.numel() for p in model.parameters()), "wall_s": elapsed()})


if __name__ == "__main__":
    main(run)
