"""Rank-aware checkpoints (docs/design.md §7, "Checkpoints"): rank 0 holds the
lock and writes ``checkpoint.pt``; each rank writes and reads the optimizer
states of the tasks the ``Assignment`` gives it. Each function takes the
``Group`` and is called by its ``Parallel`` method of the same name."""
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import torch

from .. import checkpoint
from .assignment import Assignment
from .checks import rank_seed

if TYPE_CHECKING:
    from .group import Group


@contextlib.contextmanager
def lock_on_rank_0(group: "Group", directory) -> Iterator[Path]:
    """Rank 0 holds the directory's lock (non-blocking: it fails at once if
    another run holds it, and every rank then raises)."""
    with contextlib.ExitStack() as stack:
        error = None
        if group.rank == 0:
            try:
                stack.enter_context(checkpoint.locked(directory))
            except Exception as err:
                error = err
        group.agree("locking FitConfig.checkpoint_dir", error)
        yield Path(directory)


def save_across_ranks(group: "Group", directory, state: dict, assignment: Assignment) -> None:
    """Each rank writes its tasks' optimizer states (``state["method"]["optimizers"]``
    holds those of the tasks it owns), then rank 0 writes ``checkpoint.pt``
    naming them, then deletes the previous epoch's files."""
    epochs = len(state["history"]["dev"])
    method = dict(state["method"])
    optimizers, method["optimizers"] = method["optimizers"], {}

    def write_tasks():
        files = {}
        for name, opt_state in optimizers.items():
            filename = checkpoint.task_filename(assignment.index(name), epochs)
            files[name] = [filename, checkpoint.write(Path(directory) / filename,
                                                      {"task": name, "epochs": epochs, "optimizer": opt_state})]
        return files, state["rng"]

    parts = group.gather(f"writing the task files of epoch {epochs}", write_tasks)

    def write_main():
        files = {name: f for f_rank, _ in parts for name, f in f_rank.items()}
        files = {name: files[name] for name in assignment.names}
        main = dict(state, method=method, distributed={
            "world_size": group.world_size, "files": files, "rng": [rng for _, rng in parts]})
        checkpoint.save(directory, main)
        checkpoint.remove_task_files(directory, keep={f for f, _ in files.values()})

    group.once(f"writing the checkpoint of epoch {epochs}", write_main)


def load_across_ranks(group: "Group", directory, assignment: Assignment) -> Optional[dict]:
    """The checkpoint with this rank's optimizer states (of the tasks the
    assignment gives it) and RNG state in place (``state["method"]["optimizers"]``,
    ``state["rng"]``), or None."""
    def read_main():
        state = checkpoint.load(directory)
        if state is not None and "distributed" not in state:
            raise ValueError(
                f"cannot resume: the checkpoint in FitConfig.checkpoint_dir = {str(directory)!r} was written by "
                "a single-process run, which keeps every task's optimizer state in checkpoint.pt. Fix: resume "
                "it in a single process (without torchrun), or start a task-parallel run in another "
                "checkpoint_dir.")
        return state

    state = group.together("reading the checkpoint", read_main)
    seen = group.all_gather_object("comparing the checkpoints the ranks read",
                                   None if state is None else state["distributed"]["files"])
    if any(s != seen[0] for s in seen):
        raise ValueError(
            f"the ranks read different checkpoints in FitConfig.checkpoint_dir = {str(directory)!r}. Fix: put "
            "checkpoint_dir on a file system every process shares (e.g. NFS across nodes).")
    if state is None:
        return None
    distributed = state["distributed"]

    def read_tasks():
        optimizers = {}
        for name in assignment.tasks_of(group.rank):
            filename, digest = distributed["files"][name]
            part = checkpoint.load(directory, filename, expected_digest=digest)
            if part is None:
                raise checkpoint.CheckpointError(
                    f"the checkpoint in {directory} names {filename} (task '{name}'s optimizer state), which is "
                    "missing. Fix: restore the file, or start afresh with avil.fit(..., overwrite=True).")
            optimizers[name] = part["optimizer"]
        return optimizers

    state["method"] = dict(state["method"], optimizers=group.together("reading the task files", read_tasks))
    rngs = distributed["rng"]
    if len(rngs) == group.world_size:
        state["rng"] = rngs[group.rank]
    else:  # another P: rank 0 goes on from rank 0's stream, the others from fresh ones
        state["rng"] = rngs[0]
        if group.rank > 0:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(rank_seed(state["history"]["seed"], group.rank, len(state["history"]["dev"])))
                state["rng"] = dict(rngs[0], torch=torch.get_rng_state())
    return state


def resume_changes(group: "Group", state: dict) -> dict:
    """What a resume changed beyond FitConfig: the number of processes."""
    before = state["distributed"]["world_size"]
    return {} if before == group.world_size else {"world_size": [before, group.world_size]}
