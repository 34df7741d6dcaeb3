"""One error type for everything a user can fix: stages print it and exit 2 before doing work."""


class PWLError(Exception):
    """A problem with the user's input (params, data, checkpoints) with a hint on how to fix it."""

    def __init__(self, what: str, fix: str = ""):
        self.what, self.fix = what, fix
        super().__init__(f"{what}" + (f"\n  how to fix: {fix}" if fix else ""))
