"""The fault policy: what the runtime serves once a part of the pack failed to arrive (truncated, checksum
mismatch, unreadable, unloadable). Loading goes on with the other blocks, each read whole (any of its
converters may be needed now), and the model serves the best state the arrived parts can assemble: the
highest validation accuracy (the pack header's table) among the states whose teacher blocks and converters
all arrived; without a table, the last good state."""
import math
from typing import Optional

from ..errors import PWLError
from ..manifests import EXPORT_FIX
from ..states import STUDENT, TEACHER, all_states
from .pack import block_parts, needed_converters, parse_part


def accuracy_table(raw, num_blocks: int, source: str) -> Optional[dict[str, float]]:
    """Validate a state -> validation accuracy table (every one of the 2^N states, finite numbers); None stays None."""
    if raw is None:
        return None
    states = all_states(num_blocks)
    try:
        table = {s: float(raw[s]) for s in states}
    except (KeyError, TypeError, ValueError) as e:
        raise PWLError(f"{source}: the validation accuracy table lacks or garbles state {e}",
                       f"give a number for every one of the {len(states)} states, or {EXPORT_FIX}") from None
    if not all(math.isfinite(v) for v in table.values()):
        raise PWLError(f"{source}: the validation accuracy table has non-finite values", EXPORT_FIX)
    return table


def whole_block(parts: list[str], num_blocks: int, stored) -> list[str]:
    """The block of a step with every converter stored beside it (`stored`: the pack's parts): after a failure
    the states served are no longer those of the order, and any of its converters may be needed."""
    block = next(i for kind, i in map(parse_part, parts) if kind == "teacher")
    return [p for p in block_parts(block, num_blocks) if p in stored]


def best_available(current: str, num_blocks: int, accuracy: Optional[dict], arrived: set[int],
                   converters_in: set[str], stored) -> str:
    """The state to serve once a part has failed: best validation accuracy among the states the arrived parts
    can assemble (`arrived`: teacher blocks, 0-based; `converters_in`: converter parts loaded; a converter the
    pack does not store is an identity); ties: the state served now, then more teacher blocks."""
    if accuracy is None:
        return current
    candidates = [s for s in all_states(num_blocks)
                  if all(c == STUDENT or j in arrived for j, c in enumerate(s))
                  and all(p in converters_in or p not in stored for p in needed_converters(s))]
    return max(candidates, key=lambda s: (accuracy[s], s == current, s.count(TEACHER)))
