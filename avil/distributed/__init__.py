"""Task-parallel αVIL on ``torch.distributed``: what runs where, how exact it
is, checkpoints and faults are in docs/design.md §7. Launch a script with
``torchrun``; the same ``avil.fit`` call then runs task-parallel::

    # torchrun --nproc-per-node P train.py
    device = avil.distributed.init()          # gloo on CPU, NCCL on CUDA; this rank's device
    history = avil.fit(encoder, tasks, "left", "avil", avil.FitConfig(device=device, ...))

Files: process_group.py (init, shutdown, context), parallel.py (``Parallel``,
the interface ``avil.trainer`` uses, and ``Local``, one process), group.py
(``Group``: collectives, agreement on errors), assignment.py (which rank
trains which task), checks.py (before training), checkpoints.py (rank-aware
checkpoints), runner.py (``TaskParallel``, the distributed αVIL hooks),
errors.py.
"""
from .assignment import Assignment, assign_tasks, task_costs
from .errors import RESUME, DistributedError
from .group import Group
from .parallel import Local, Parallel
from .process_group import DEFAULT_TIMEOUT, DEV_GRADIENTS, context, init, shutdown
from .runner import TaskParallel

__all__ = ["Assignment", "DEFAULT_TIMEOUT", "DEV_GRADIENTS", "DistributedError", "Group", "Local", "Parallel",
           "RESUME", "TaskParallel", "assign_tasks", "context", "init", "shutdown", "task_costs"]
