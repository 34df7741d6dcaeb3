"""The PWL objective's names and rules that params are checked against (pwl/losses.py implements them)."""
from ..errors import PWLError

# How the cross term trains mixed states (pwl.losses.CROSS_MODES implements each): name -> what it does.
CROSS_MODES = {
    "random": "published: KD into one sampled mixed state per step",
    "all": "published: every prefix state, hard + soft, every step",
    "lattice": "ours: every prefix state plus sampled states of every other kind, hard + soft",
}

# The student's BatchNorm in mixed passes (pwl.losses.MIXED_BN implements each): name -> what it does.
MIXED_BN = {
    "freeze": "batch statistics; running statistics kept",
    "eval": "running statistics, as at inference: mixed states trained as they are served",
    "update": "batch statistics; running statistics move",
}


def check_pairing(teacher_widths: list[int], student_widths: list[int]) -> None:
    """The pairing rule every family shares: block i of one swaps for block i of the other, so both have the
    same number of blocks, and a converter maps the teacher's width down, never up."""
    if len(teacher_widths) != len(student_widths):
        raise PWLError(f"teacher has {len(teacher_widths)} blocks but student has {len(student_widths)}",
                       "PWL swaps block i of one for block i of the other: give both the same number of blocks")
    wider = [i + 1 for i, (t, s) in enumerate(zip(teacher_widths, student_widths)) if s > t]
    if wider:
        raise PWLError(f"student is wider than the teacher at block(s) {wider} "
                       f"(student {student_widths} vs teacher {teacher_widths})",
                       "make every student width <= the teacher's width at the same block")
