"""Per-epoch checkpoints that a run killed at any moment resumes from exactly,
that cannot run code, and that are refused when damaged.

``directory/checkpoint.pt`` holds ``{"format": 2, "sha256": ..., "state": state}``:

- written atomically (``avil.io``): temp file, fsync, rename, so a kill or a
  full disk mid-write leaves the previous checkpoint intact and no temp file;
- ``state`` holds only tensors and plain containers (dicts, lists, numbers,
  strings: optimizer state dicts qualify), and is loaded with
  ``torch.load(weights_only=True)``, so a checkpoint file cannot run code;
- ``sha256`` is a digest of ``state`` (every tensor's dtype, shape and bytes,
  every key and value, in order), verified on load: a truncated or altered
  file is refused with an error naming it, never silently loaded.

A task-parallel run (``torchrun``, avil/distributed/) writes the same
``checkpoint.pt`` from rank 0, without the per-task optimizer states: each
rank writes those of its own tasks to ``task<k>.epoch<e>.pt`` (``task_filename``),
and ``checkpoint.pt``, renamed last, records their names and digests, so it
names one complete set and a file of another epoch or run is refused on load.

``locked(directory)`` holds an exclusive lock on ``directory/checkpoint.lock``
for a run (``fcntl.flock``; released when the run ends, fails, or its process
dies), so two runs never write one directory. Where ``fcntl`` does not exist
(Windows) there is no lock.
"""
import contextlib
import hashlib
import os
import pickle
from pathlib import Path
from typing import Iterator, Optional

import torch

from . import io

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

FILENAME = "checkpoint.pt"
BEST_FILENAME = "best.pt"  # the model state of the best dev epoch (FitConfig.load_best_model_at_end)
TASK_FILENAME = "task{index}.epoch{epoch}.pt"  # a task-parallel run's per-task optimizer state
LOCKNAME = "checkpoint.lock"
FORMAT = 2


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, read or trusted; the message names the file and the fix."""


def save(directory, state: dict) -> None:
    """Write ``state`` to ``directory/checkpoint.pt`` atomically, with its digest."""
    write(Path(directory) / FILENAME, state)


def write(final: Path, state: dict) -> str:
    """``save`` into the file ``final``; returns the digest of ``state``."""
    directory = final.parent
    payload = {"format": FORMAT, "sha256": digest(state), "state": state}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with io.atomic_open(final, "wb") as f:
            torch.save(payload, f)
    except Exception as err:
        cause = _os_error(err)
        if cause is None:  # not the file system's doing (e.g. an object torch cannot save): as it is
            raise
        previous = "the previous checkpoint there is intact" if final.exists() else "no checkpoint was written"
        raise CheckpointError(
            f"could not write the checkpoint {final} ({type(cause).__name__}: {cause}); {previous}. "
            "Fix: free disk space (or fix the directory's permissions), then continue with "
            "avil.fit(..., resume=True)."
        ) from err
    return payload["sha256"]


def _os_error(err: BaseException) -> Optional[OSError]:
    """The OSError behind ``err``: torch.save's zip writer reports a full disk
    as a RuntimeError raised while handling the OSError."""
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    return err


def exists(directory) -> bool:
    return (Path(directory) / FILENAME).exists()


def load(directory, filename: str = FILENAME, expected_digest: Optional[str] = None) -> Optional[dict]:
    """The verified state of ``directory/filename``, or None if there is none.

    expected_digest: the digest another file recorded for this one (a
    task-parallel checkpoint's task files): a file with another is refused.
    """
    path = Path(directory) / filename
    if not path.exists():
        return None
    fix = (f"Fix: restore the file from a backup, or start afresh with avil.fit(..., overwrite=True) "
           f"(or delete {path}).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain containers, which "
            f"could run code when loaded ({str(err).splitlines()[0]}). Only load checkpoints you trust. " + fix
        ) from err
    except Exception as err:  # torch raises RuntimeError, OSError, EOFError, ... on a damaged file
        raise CheckpointError(
            f"cannot read the checkpoint {path}: the file is damaged (truncated or corrupted: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). " + fix
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "sha256" not in payload:
        raise CheckpointError(
            f"{path} is not an avil checkpoint of format {FORMAT} (written by another program or an older "
            "avil, so it cannot be verified). " + fix
        )
    if digest(payload["state"]) != payload["sha256"]:
        raise CheckpointError(
            f"the checkpoint {path} fails its integrity check (its sha256 digest does not match its "
            "contents): the file was damaged after it was written. " + fix
        )
    if expected_digest is not None and payload["sha256"] != expected_digest:
        raise CheckpointError(
            f"{path} is intact but is not the file {Path(directory) / FILENAME} recorded (its digest differs): "
            "it belongs to another epoch or run. " + fix
        )
    return payload["state"]


def task_filename(index: int, epoch: int) -> str:
    """The file of task ``index``'s (in the task list) optimizer state after ``epoch`` epochs."""
    return TASK_FILENAME.format(index=index, epoch=epoch)


def remove_task_files(directory, keep) -> None:
    """Delete the task files in ``directory`` other than ``keep`` (file names):
    those of earlier epochs, once a newer ``checkpoint.pt`` no longer names them."""
    for path in Path(directory).glob(TASK_FILENAME.format(index="*", epoch="*")):
        if path.name not in keep:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def digest(obj) -> str:
    """sha256 over a state of tensors and plain containers, in a fixed order."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for value in obj:
            _feed(h, value)
    else:
        h.update(f"V{type(obj).__name__}:{obj!r}".encode())


@contextlib.contextmanager
def locked(directory) -> Iterator[Path]:
    """Hold ``directory``'s lock for the ``with`` block; refuse if another run holds it."""
    directory = io.check_writable(directory, "FitConfig.checkpoint_dir")
    path = directory / LOCKNAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise CheckpointError(
                    f"FitConfig.checkpoint_dir = {str(directory)!r} is in use by another avil.fit run "
                    f"(process {owner} holds {path}). Two runs writing one directory would overwrite each "
                    "other's checkpoints. Fix: wait for that run to finish, or give this run another "
                    "checkpoint_dir."
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield directory
    finally:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
