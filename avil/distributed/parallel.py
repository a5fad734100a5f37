"""``Parallel``: what ``avil.fit`` asks of where it runs, and ``Local``, one process.

``avil.trainer`` calls these methods, and only these, on ``Setup.parallel``
(``avil.distributed.context()``): ``Local`` forwards each to the plain
single-process code; ``Group`` (group.py) runs them on every rank of a
torchrun run (docs/design.md §7).
"""
from pathlib import Path
from typing import Callable, ContextManager, Optional, Protocol, Sequence

from .. import checkpoint, io
from ..config import FitConfig
from ..flat import FlatParameters
from .assignment import Assignment


class Parallel(Protocol):
    """Where a run trains: one process, or the ranks of a process group."""

    rank: int  # this process's rank, 0 in one process
    world_size: int  # the number of processes, 1 in one process

    def check(self, cls: type, method: str, tasks: Sequence, target: str, config: FitConfig) -> FitConfig:
        """Refuse what cannot run here, before training; the config this process runs with."""

    def assign(self, tasks: Sequence, config: FitConfig) -> Assignment:
        """Which process trains which task (a value: nothing is stored)."""

    def check_writable(self, directory) -> None:
        """``FitConfig.checkpoint_dir`` is a directory every process can write."""

    def share(self, flat: FlatParameters, config: FitConfig) -> None:
        """Every process starts from the same θ."""

    def runner_class(self, cls: type, assignment: Assignment) -> type:
        """The method's class as it runs here, training the tasks ``assignment`` gives this process."""

    def locked(self, directory) -> ContextManager[Path]:
        """The checkpoint directory's lock, held for the run."""

    def exists(self, directory) -> bool:
        """Whether the directory holds a checkpoint."""

    def load(self, directory, assignment: Assignment) -> Optional[dict]:
        """The checkpoint, with this process's optimizer and RNG states in place, or None."""

    def save(self, directory, state: dict, assignment: Assignment) -> None:
        """Checkpoint ``state`` (``trainer.checkpoint_state``) atomically."""

    def once(self, what: str, fn: Callable):
        """``fn()`` run by one process, its (small) result on every process."""

    def resume_changes(self, state: dict) -> dict:
        """What a resume changed beyond FitConfig, for ``History.resumes``."""


class Local:
    """One process (no process group): forwards to the plain code path."""

    rank, world_size = 0, 1

    def check(self, cls: type, method: str, tasks: Sequence, target: str, config: FitConfig) -> FitConfig:
        return config

    def assign(self, tasks: Sequence, config: FitConfig) -> Assignment:
        return Assignment.one_process(tasks)

    def check_writable(self, directory) -> None:
        io.check_writable(directory, "FitConfig.checkpoint_dir")

    def share(self, flat: FlatParameters, config: FitConfig) -> None:
        """Nothing to share."""

    def runner_class(self, cls: type, assignment: Assignment) -> type:
        return cls

    def locked(self, directory) -> ContextManager[Path]:
        return checkpoint.locked(directory)

    def exists(self, directory) -> bool:
        return checkpoint.exists(directory)

    def load(self, directory, assignment: Assignment) -> Optional[dict]:
        state = checkpoint.load(directory)
        if state is not None and "distributed" in state:
            raise ValueError(
                f"cannot resume: the checkpoint in FitConfig.checkpoint_dir = {str(directory)!r} was written by a "
                f"task-parallel run on {state['distributed']['world_size']} processes, which keeps each task's "
                "optimizer state in its own file. Fix: resume it under torchrun (any --nproc-per-node up to the "
                "number of tasks; 1 runs it in one process).")
        return state

    def save(self, directory, state: dict, assignment: Assignment) -> None:
        checkpoint.save(directory, state)

    def once(self, what: str, fn: Callable):
        return fn()

    def resume_changes(self, state: dict) -> dict:
        return {}
