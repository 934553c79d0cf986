"""Reading the start of a dump file, with errors that say what to do."""

from __future__ import annotations

from pinspect.errors import TargetError

__all__ = ["ACCEPTED", "read_head"]

ACCEPTED = (
    "accepted formats: ELF core (vmcore, /proc/kcore, QEMU dump-guest-memory), "
    "kdump-compressed ('KDUMP   '/'DISKDUMP' header) and makedumpfile's flattened format"
)


def read_head(path: str, n: int) -> bytes:
    """Read the first *n* bytes of *path*, turning OS errors into :class:`TargetError`."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except FileNotFoundError:
        raise TargetError(f"{path}: no such file", "check the path of the dump") from None
    except IsADirectoryError:
        raise TargetError(f"{path}: is a directory, not a dump file", ACCEPTED) from None
    except PermissionError:
        raise TargetError(
            f"{path}: permission denied",
            "dumps are often readable by root only: run with sudo or chmod/chown the file",
        ) from None
    except OSError as e:
        raise TargetError(f"{path}: cannot read: {e.strerror or e}", "") from None
