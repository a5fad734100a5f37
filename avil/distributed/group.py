"""``Group``: the default process group as a task-parallel ``avil.fit`` uses it.

Its own two jobs: the collectives, each through ``Group.collective``, which
turns a backend failure into a DistributedError naming the rank and the step;
and agreement on errors (``agree``, ``together``, ``gather``, ``once``), so a
Python error on one rank stops every rank with that rank's message. The
``Parallel`` methods it implements are one line each, calling the checks
before training (checks.py), the rank-aware checkpoint I/O (checkpoints.py)
and the runner (runner.py).
"""
from typing import Callable, ContextManager, Optional, Sequence

import torch
import torch.distributed as dist

from .. import checkpoint
from ..config import FitConfig
from ..flat import FlatParameters
from . import checkpoints, checks
from .assignment import Assignment, assign
from .errors import RESUME, DistributedError
from .runner import TaskParallel


class Group:
    """The default process group (``avil.distributed.init``); implements ``Parallel``.

    dev_gradient: how the α-step's dev gradient is computed, "split" or
        "once" (``init(dev_gradient=...)``, read by ``TaskParallel.dev_loss``).
    """

    def __init__(self, dev_gradient: str = "split"):
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.backend = dist.get_backend()
        self.dev_gradient = dev_gradient

    # -- collectives ---------------------------------------------------------
    def collective(self, what: str, op: Callable, *args):
        """Run one collective; a backend failure becomes a DistributedError naming the step."""
        try:
            return op(*args)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what} failed ({type(err).__name__}: {first}). Another "
                "process of the run died, or did not reach this step within the collective timeout "
                f"(avil.distributed.init(timeout=...)); its own output names the cause. {RESUME}") from err

    def all_reduce(self, what: str, tensor: torch.Tensor) -> None:
        self.collective(what, dist.all_reduce, tensor)

    def broadcast(self, what: str, tensor: torch.Tensor) -> None:
        self.collective(what, dist.broadcast, tensor, 0)

    def all_gather(self, what: str, out: torch.Tensor, mine: torch.Tensor) -> None:
        """out (P·M,) ← every rank's ``mine`` (M,), by rank."""
        self.collective(what, dist.all_gather_single, out, mine)

    def all_to_all(self, what: str, out: torch.Tensor, sent: torch.Tensor, out_sizes: Sequence[int],
                   sent_sizes: Sequence[int]) -> None:
        """Rank r sends ``sent``'s r-th piece (``sent_sizes``) to rank q and
        receives rank q's piece for it into ``out``'s q-th piece (``out_sizes``)."""
        self.collective(what, dist.all_to_all_single, out, sent, list(out_sizes), list(sent_sizes))

    def all_gather_object(self, what: str, obj) -> list:
        out = [None] * self.world_size
        self.collective(what, dist.all_gather_object, out, obj)
        return out

    def broadcast_object(self, what: str, obj):
        box = [obj]
        self.collective(what, dist.broadcast_object_list, box, 0)
        return box[0]

    # -- agreement on errors ----------------------------------------------------
    def agree(self, what: str, error: Optional[BaseException], payload=None) -> list:
        """Every rank says whether ``what`` failed on it, with a payload; returns
        the payloads by rank. If it failed anywhere, every rank raises: the
        failing rank its own error, the others a DistributedError with its message."""
        report = None if error is None else f"{type(error).__name__}: {error}"
        gathered = self.all_gather_object(what, (report, payload))
        if error is not None:
            raise error
        for rank, (message, _) in enumerate(gathered):
            if message is not None:
                raise DistributedError(f"rank {rank} of {self.world_size} failed in {what}: {message} {RESUME}")
        return [p for _, p in gathered]

    def together(self, what: str, fn: Callable):
        """Run ``fn`` on every rank and return its result here; if it raised on
        any rank, every rank raises (``agree``)."""
        result, error = self._attempt(fn)
        self.agree(what, error)
        return result

    def gather(self, what: str, fn: Callable) -> list:
        """``together``, returning every rank's (small, picklable) result, by rank."""
        result, error = self._attempt(fn)
        return self.agree(what, error, result)

    @staticmethod
    def _attempt(fn: Callable):
        try:
            return fn(), None
        except DistributedError:  # a collective inside failed: the others know already
            raise
        except Exception as err:  # handed to every rank by agree()
            return None, err

    def once(self, what: str, fn: Callable):
        """Run ``fn`` on rank 0 only; its result (small, picklable) on every rank."""
        result, error = self._attempt(fn) if self.rank == 0 else (None, None)
        report = None if error is None else f"{type(error).__name__}: {error}"
        result, report = self.broadcast_object(what, (result, report))
        if error is not None:
            raise error
        if report is not None:
            raise DistributedError(f"rank 0 of {self.world_size} failed in {what}: {report} {RESUME}")
        return result

    # -- Parallel ----------------------------------------------------------------
    def check(self, cls: type, method: str, tasks: Sequence, target: str, config: FitConfig) -> FitConfig:
        return checks.check_run(self, cls, method, tasks, target, config)

    def assign(self, tasks: Sequence, config: FitConfig) -> Assignment:
        return assign(tasks, config, self.world_size)

    def check_writable(self, directory) -> None:
        checks.check_shared_directory(self, directory)

    def share(self, flat: FlatParameters, config: FitConfig) -> None:
        checks.share_parameters(self, flat, config)

    def runner_class(self, cls: type, assignment: Assignment) -> type:
        """The task-parallel version of an AlphaVIL class (``check`` refused others)."""
        return type(f"TaskParallel{cls.__name__}", (TaskParallel, cls), {"group": self, "assignment": assignment})

    def locked(self, directory) -> ContextManager:
        return checkpoints.lock_on_rank_0(self, directory)

    def exists(self, directory) -> bool:
        return self.once("looking for a checkpoint", lambda: checkpoint.exists(directory))

    def load(self, directory, assignment: Assignment) -> Optional[dict]:
        return checkpoints.load_across_ranks(self, directory, assignment)

    def save(self, directory, state: dict, assignment: Assignment) -> None:
        checkpoints.save_across_ranks(self, directory, state, assignment)

    def resume_changes(self, state: dict) -> dict:
        return checkpoints.resume_changes(self, state)

