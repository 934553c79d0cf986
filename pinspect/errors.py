"""Errors that pinspect reports to the user as one line with a hint."""


class PinspectError(Exception):
    """An error with a message for the user and an optional hint on how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class TargetError(PinspectError):
    """The target (live kernel, dump file, QEMU guest) cannot be opened or read."""


class DebugInfoError(PinspectError):
    """Debug info is missing or does not match the target."""


class FeatureMissing(PinspectError):
    """The kernel lacks something a command needs (page_ext, CMA, page_owner, ...)."""
