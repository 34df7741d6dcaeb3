"""Validators shared by the family schemas."""
from pydantic import BaseModel, ConfigDict, model_validator


class FamilyConfig(BaseModel):
    """Base schema: unknown keys are errors; `widths`/`depths` give one entry per block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
