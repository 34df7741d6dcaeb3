"""Stage `kd@arch`: vanilla knowledge distillation (Hinton: hard + soft terms only, pwl.losses.KDObjective) with
its own recipe `kd` (by default PWL's budget, initialisation, alpha and temperature): the control that tells what
PWL's alignment terms cost the student."""
from pwl import paths
from pwl.build import build, freeze, init_student
from pwl.checkpoints import load_weights
from pwl.losses import KDObjective
from pwl.stage_cli import main
from pwl.teacher_bn import target_teacher
from pwl.train import Trainee
from pwl.stage_training import TrainingStage


def run():
    stage, _ = TrainingStage.start(__doc__)
    cfg, arch = stage.cfg, stage.arch
    k = cfg.kd
    teacher, student = freeze(build(cfg.teacher, stage.ds)), build(cfg.student, stage.ds)
    load_weights(paths.weights(arch, "teacher", stage.params.seed), teacher)
    init_student(student, k.init_student, arch, cfg, stage.params.seed)
    teacher, student = stage.compute.module(teacher), stage.compute.module(student)
    teacher = target_teacher(teacher, k.teacher_bn)
    objective = KDObjective(student, teacher, k.alpha, k.temperature)
    result = stage.fit("kd", Trainee(student, [{"params": student.parameters()}], objective,
                                     lambda: {"score": stage.accuracy(student, stage.val)}),
                       k.optim, depends_on=(cfg.teacher, cfg.student, k.optim, k.init_student, k.alpha, k.temperature,
                                            k.teacher_bn))
    stage.finish("kd", student, {"model": cfg.student.model_dump(mode="json")}, lambda: {
        "val_acc": result.best_score, "test_acc": stage.accuracy(student, stage.test),
        "best_epoch": result.best_epoch, "epochs": k.optim.epochs, "init_student": k.init_student,
        "resumed_from_epoch": result.resumed_from})


if __name__ == "__main__":
    main(run)
