"""Stages `train_teacher@arch` and `train_student@arch`: cross-entropy training from scratch (or from
pretrained weights where the model config names them), best epoch on val. Runs under torchrun too (DDP)."""
from pwl.build import build
from pwl.models import init_pretrained
from pwl.stage_cli import main
from pwl.train import CrossEntropyObjective, Trainee
from pwl.stage_training import TrainingStage


def run():
    stage, role = TrainingStage.start(__doc__, roles=("teacher", "student"))
    cfg = stage.cfg
    model_cfg, optim = (cfg.teacher, cfg.train_teacher) if role == "teacher" else (cfg.student, cfg.train_student)
    model = build(model_cfg, stage.ds)
    pretrained = init_pretrained(model, model_cfg)  # before any work: an unreachable download stops here
    model = stage.compute.module(model)

    result = stage.fit(role, Trainee(model, [{"params": model.parameters()}], CrossEntropyObjective(model),
                                     lambda: {"score": stage.accuracy(model, stage.val)}), optim,
                       depends_on=(model_cfg, optim))
    stage.finish(role, model, {"model": model_cfg.model_dump(mode="json")}, lambda: {
        "val_acc": result.best_score, "test_acc": stage.accuracy(model, stage.test),
        "best_epoch": result.best_epoch, "epochs": optim.epochs, "resumed_from_epoch": result.resumed_from,
        "params": sum(p.numel() for p in model.parameters()), "pretrained": pretrained})


if __name__ == "__main__":
    main(run)
