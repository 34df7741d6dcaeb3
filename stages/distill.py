"""Stage `distill@arch`: PWL distillation of the block-aligned student and converters from the frozen teacher.
Runs under torchrun too (DDP over the student and converters)."""
import random

from pwl import paths
from pwl.build import freeze, init_student
from pwl.checkpoints import load_weights
from pwl.losses import PWLObjective
from pwl.mixing import build_mixed, distilled_parts, state_accuracies
from pwl.stage_cli import main
from pwl.states import prefix_mean, prefix_order
from pwl.stitching import fit_converters
from pwl.teacher_bn import target_mixed
from pwl.train import Trainee
from pwl.stage_training import TrainingStage


def run():
    stage, _ = TrainingStage.start(__doc__)
    cfg, arch, params = stage.cfg, stage.arch, stage.params
    dcfg = cfg.distill
    mixed = build_mixed(cfg, stage.ds)
    load_weights(paths.weights(arch, "teacher", params.seed), mixed.teacher)
    freeze(mixed.teacher)
    init_student(mixed.student, dcfg.init_student, arch, cfg, params.seed)
    stage.compute.module(mixed)
    fitted = {}  # SN-Net's start: each converter's linear map fitted to the paired activations (pwl.stitching)
    if dcfg.converter_init == "lstsq":
        fitted = fit_converters(mixed, stage.train, stage.norm, dcfg.converter_fit_images, params.eval.batch_size,
                                stage.compute)
    parts = distilled_parts(mixed)
    targets = target_mixed(mixed, dcfg.teacher_bn)  # `mixed` keeps the trained teacher: validation's all-T
    lr = dcfg.optim.lr
    groups = [{"params": mixed.student.parameters(), "lr": lr},
              {"params": mixed.converters.parameters(), "lr": lr * dcfg.converter_lr_scale}]
    prefix = prefix_order(mixed.num_blocks)
    rng = random.Random(params.seed)

    def score_fn():
        acc = state_accuracies(mixed, prefix, stage.val, stage.norm, params.eval.batch_size, stage.compute)
        student, mean = acc[prefix[0]], prefix_mean(acc, mixed.num_blocks)
        return {"score": student if dcfg.select_on == "student" else mean, "student_acc": student,
                "prefix_mean": mean}

    trainee = Trainee(parts, groups, PWLObjective(targets, dcfg.loss, rng), score_fn, py_rng=rng)

    def drift():
        """The teacher as the authors evaluated it: its BN statistics as distillation left them."""
        if targets is mixed:
            return {}
        drifted = targets.teacher.eval()
        return {"drifted_teacher_val_acc": stage.accuracy(drifted, stage.val),
                "drifted_teacher_test_acc": stage.accuracy(drifted, stage.test)}

    result = stage.fit("pwl", trainee, dcfg.optim, depends_on=(cfg,))
    stage.finish("pwl", parts, {"teacher": cfg.teacher.model_dump(mode="json"),
                                "student": cfg.student.model_dump(mode="json")}, lambda: {
        "val_score": result.best_score, "select_on": dcfg.select_on, "best_epoch": result.best_epoch,
        "epochs": dcfg.optim.epochs, "resumed_from_epoch": result.resumed_from,
        "converter_params": sum(p.numel() for p in mixed.converters.parameters()),
        "converter_init": dcfg.converter_init,
        **({"converter_init_unexplained": fitted} if fitted else {}), **drift()})


if __name__ == "__main__":
    main(run)
