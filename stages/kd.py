"""Stage `kd@arch`: vanilla knowledge distillation (Hinton: hard + soft terms only) with PWL's own budget,
initialisation, alpha and temperature: the control that tells what PWL's alignment terms cost the student."""
import torch

from pwl import paths
from pwl.build import build, freeze, init_student
from pwl.checkpoints import load_weights
from pwl.losses import kd_loss
from pwl.stage import main
from pwl.teacher_bn import target_teacher
from pwl.train import Trainee
from pwl.training_stage import TrainingStage


def run():
    stage, _ = TrainingStage.start(__doc__)
    cfg, arch = stage.cfg, stage.arch
    d = cfg.distill
    teacher, student = freeze(build(cfg.teacher, stage.ds)), build(cfg.student, stage.ds)
    load_weights(paths.weights(arch, "teacher", stage.params.seed), teacher)
    init_student(student, arch, cfg, stage.params.seed)
    teacher, student = stage.compute.module(teacher), stage.compute.module(student)
    teacher = target_teacher(teacher, d.teacher_bn)
    a, T = d.loss.alpha, d.loss.temperature

    def loss_fn(x, y, progress):
        with torch.no_grad():
            z_t = teacher(x)
        z = student(x)
        loss, terms = kd_loss(z, z_t, y, a, T)
        return loss, {k: v.detach() for k, v in terms.items()}, z

    result = stage.fit("kd", Trainee(student, [{"params": student.parameters()}], loss_fn,
                                     lambda: {"score": stage.accuracy(student, stage.val)}),
                       d.optim, depends_on=(cfg.teacher, cfg.student, d.optim, d.init_student, a, T, d.teacher_bn))
    stage.finish("kd", student, {"model": cfg.student.model_dump(mode="json")}, lambda: {
        "val_acc": result.best_score, "test_acc": stage.accuracy(student, stage.test),
        "best_epoch": result.best_epoch, "epochs": d.optim.epochs, "init_student": d.init_student,
        "resumed_from_epoch": result.resumed_from})


if __name__ == "__main__":
    main(run)
