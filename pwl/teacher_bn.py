"""The frozen teacher's BatchNorm while it makes the distillation targets (`distill.teacher_bn`, `kd.teacher_bn`).

"eval" (ours): the teacher runs as it is served, with its running statistics; nothing in it moves.
"train" (the authors' code, whose HF Trainer puts every module in train mode): the teacher's BatchNorm
normalises with each batch's own statistics, so its logits and block features depend on the batch they came
in, and every forward updates its running statistics (momentum 0.1), the mixed passes included, where teacher
blocks receive converted student features. Its weights get no gradient either way.

What all-T means under "train": the drift happens in a copy. The teacher that train_teacher saved is never
rewritten, and it is the one that validation (checkpoint selection) and the `evaluate` stage run for all-T
and for every mixed state: all-T stays the trained teacher, and only the targets the student and converters
learnt from were made with batch statistics. In the authors' code the drifted statistics are the ones saved
and evaluated, so their all-T is a teacher whose statistics moved during distillation, not the teacher they
trained: one way a published all-T cell can differ from the teacher's accuracy. The distill stage measures
that drifted teacher too (`drifted_teacher_*_acc`), counted from the start of the run or from its last resume
(the copy's statistics are not checkpointed: they never enter a training step, which uses batch statistics)."""
import copy

from torch import nn

from .mixing import MixedModel


def target_teacher(teacher: nn.Module, mode: str) -> nn.Module:
    """The teacher that makes the targets: `teacher` itself under "eval", a train-mode copy under "train"."""
    return teacher if mode == "eval" else copy.deepcopy(teacher).train()


def target_mixed(mixed: MixedModel, mode: str) -> MixedModel:
    """The mixed model the distillation loss runs: `mixed` under "eval"; under "train" the same student and
    converters (trained in place) around a train-mode copy of the teacher."""
    if mode == "eval":
        return mixed
    return MixedModel(target_teacher(mixed.teacher, mode), mixed.student, mixed.converters)
