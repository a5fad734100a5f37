"""Atomic file writes: whoever reads a file the package wrote (a resumed run,
a notebook, git) sees the previous version or the new one, never half of one.

Every write goes to a temp file in the target's own directory (so the final
``os.replace`` is a rename within one file system, which POSIX makes atomic),
is flushed and fsynced, then renamed over the target; the directory is
fsynced so the rename survives a power cut. If anything fails (a full disk, a
kill), the temp file is removed and the previous file is left as it was.
"""
import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_open(path, "wb") as f: ...``: ``path`` gets what was written
    to ``f`` once the block finishes, or stays as it was if the block raises.

    mode: "wb" or "w" (text, UTF-8). The file gets the permissions a plain
    ``open(path, "w")`` would give (0o666 less the umask).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def write_text(path, text: str) -> None:
    """Atomically replace ``path`` by ``text`` (UTF-8)."""
    with atomic_open(path, "w") as f:
        f.write(text)


def check_writable(directory, field: str) -> Path:
    """Create ``directory`` if needed and prove that a file can be written
    there (and removed), before any long computation depends on it.

    field: what the user set, for the error (e.g. "FitConfig.checkpoint_dir").
    Raises ValueError naming the field, the directory and the fix.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_open(directory / ".avil-write-test", "wb") as f:
            f.write(b"ok")
        os.unlink(directory / ".avil-write-test")
    except (OSError, ValueError) as err:  # ValueError: e.g. a NUL byte in the path
        raise ValueError(
            f"{field} = {str(directory)!r} is not a writable directory ({type(err).__name__}: {err}). "
            f"Fix: point {field} at a directory you can write to (it is created if missing)."
        ) from err
    return directory


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable; a no-op where directories cannot
    be opened (Windows) or fsynced (some network file systems)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
