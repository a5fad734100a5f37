"""Which rank trains which task (docs/design.md §7, "Ownership")."""
from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence

from ..config import FitConfig
from ..data import num_batches, sample_size


@dataclass(frozen=True)
class Assignment:
    """The owner of every task, fixed for a run: ``owner`` {task: rank} in
    task-list order. The rank that owns a task trains its passes, holds its
    row of Δ and its optimizer, and writes its checkpoint file. Returned by
    ``Parallel.assign``; handed to the runner and to the checkpoint code."""

    owner: Mapping[str, int]
    world_size: int

    @classmethod
    def one_process(cls, tasks: Sequence) -> "Assignment":
        """Every task on rank 0 of 1."""
        return cls({t.name: 0 for t in tasks}, 1)

    @property
    def names(self) -> List[str]:
        return list(self.owner)

    def tasks_of(self, rank: int) -> List[str]:
        """The tasks ``rank`` owns, in task-list order."""
        return [name for name, r in self.owner.items() if r == rank]

    def index(self, name: str) -> int:
        """The task's position in the task list (its row of Δ in one process)."""
        return self.names.index(name)


def task_costs(tasks, config: FitConfig) -> Dict[str, int]:
    """{task: optimizer steps of its pass}: ⌈round(ρ·|D_t^train|) / batch_size⌉,
    the batches ``AlphaVIL.task_passes`` trains on (Method.order's sample)."""
    return {t.name: num_batches(sample_size(len(t.train), config.rho), config.batch_size) for t in tasks}


def assign_tasks(costs: Dict[str, float], world_size: int) -> Dict[str, int]:
    """{task: rank}: longest processing time first, capped at ⌈K/P⌉ tasks per rank.

    Tasks in order of decreasing cost (ties: task-list order) each go to the
    least-loaded rank (ties: the lowest rank) among those holding fewer than
    ⌈K/P⌉ tasks. The epoch's task phase lasts as long as the most loaded
    rank: plain LPT keeps that within 4/3 of the best split. The cap bounds
    the rows of Δ (and optimizer states) a rank holds, memory being the hard
    limit; it costs balance only when a few tasks dwarf the others.
    Deterministic: every rank computes the same assignment.
    """
    names = list(costs)
    if len(names) < world_size:
        raise ValueError(
            f"{len(names)} tasks on {world_size} processes: task-parallel αVIL gives every process at least one "
            f"task pass, so {world_size - len(names)} would idle. Fix: launch at most {len(names)} processes "
            f"(torchrun --nproc-per-node {len(names)}).")
    cap = -(-len(names) // world_size)
    load, count, owner = [0.0] * world_size, [0] * world_size, {}
    for i in sorted(range(len(names)), key=lambda i: (-costs[names[i]], i)):
        rank = min((r for r in range(world_size) if count[r] < cap), key=lambda r: (load[r], r))
        owner[names[i]] = rank
        load[rank] += costs[names[i]]
        count[rank] += 1
    return {name: owner[name] for name in names}


def assign(tasks, config: FitConfig, world_size: int) -> Assignment:
    """The run's ``Assignment``: ``assign_tasks`` on the tasks' pass costs."""
    return Assignment(assign_tasks(task_costs(tasks, config), world_size), world_size)
