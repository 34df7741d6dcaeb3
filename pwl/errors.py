"""One error type for everything a user can fix: stages print it and exit 2 before doing work."""
import sys


class PWLError(Exception):
    """A problem with the user's input (params, data, checkpoints) with a hint on how to fix it."""

    def __init__(self, what: str, fix: str = ""):
        self.what, self.fix = what, fix
        super().__init__(f"{what}" + (f"\n  how to fix: {fix}" if fix else ""))


def warn(what: str) -> None:
    """Input that is probably not what the user meant but can still be used: one line on stderr, no stop."""
    print(f"warning: {what}", file=sys.stderr, flush=True)
