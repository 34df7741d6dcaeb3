"""Validators shared by the family schemas."""
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

# every integer of a model config (widths, depths, dims, heads, patch sizes, strides...) is a size or a count:
# at least 1 (0 divides by zero or builds nothing), at most this (beyond any real model; a typo must not exhaust
# memory while building)
MAX_SIZE = 2 ** 14


class FamilyConfig(BaseModel):
    """Base schema: unknown keys are errors; `widths`/`depths` give one entry per block."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # no inf/nan ratios

    @field_validator("*")
    @classmethod
    def _sizes(cls, v, info):
        ints = v if isinstance(v, tuple) else (v,)
        if ints and all(isinstance(i, int) and not isinstance(i, bool) for i in ints) \
                and not 1 <= min(ints) <= max(ints) <= MAX_SIZE:
            raise ValueError(f"{info.field_name} {list(v) if isinstance(v, tuple) else v}: sizes and counts "
                             f"must be integers from 1 to {MAX_SIZE}")
        return v

    @model_validator(mode="after")
    def _same_length(self):
        w, d = getattr(self, "widths", None), getattr(self, "depths", None)
        if w is not None and d is not None and len(w) != len(d):
            raise ValueError(f"widths has {len(w)} entries but depths has {len(d)}: give one of each per block")
        if d is not None and (len(d) == 0 or min(d) < 1):
            raise ValueError(f"depths {list(d)} must be a non-empty list of positive integers")
        if w is not None and min(w) < 1:
            raise ValueError(f"widths {list(w)} must be positive")
        return self

    @property
    def num_blocks(self) -> int:
        return len(self.depths)

    def block_widths(self) -> list[int]:
        return list(self.widths)

    # Family-specific rules, as hooks: the params schema calls them, so a model that cannot be built stops every
    # stage with a one-line message (exit 2) before any work, and pwl/config.py names no family.

    def check_input(self, image_size: int) -> None:
        """Raise ValueError if this model cannot take `image_size` x `image_size` images."""

    def check_student(self, student: "FamilyConfig") -> None:
        """Raise ValueError if `student` cannot swap blocks with this teacher for a reason other than widths
        (pwl.mixing.check_pairing checks those for every family)."""
