"""``TaskParallel``: αVIL's epoch with its hooks run over the group
(docs/design.md §7, "One epoch" and "Exactness")."""
from typing import TYPE_CHECKING, List, Sequence

import torch

from .. import checkpoint, ops
from ..flat import mean_buffers_
from ..methods.base import EpochResult
from .assignment import Assignment
from .errors import DistributedError

if TYPE_CHECKING:
    from .group import Group


def column_ranges(param_numel: int, numel: int, world_size: int) -> List[slice]:
    """Each rank's range of θ for the merge: the parameters in P near-equal
    ranges, the float buffers with the last one (so their merge rule runs on
    one rank, over all of them, as in one process)."""
    step = -(-param_numel // world_size)
    starts = [min(rank * step, param_numel) for rank in range(world_size)] + [numel]
    return [slice(a, b) for a, b in zip(starts, starts[1:])]


class TaskParallel:
    """Mixed in before an AlphaVIL class by ``Group.runner_class``: the same
    epoch (Algorithm 1), with the hooks of AlphaVIL distributed over the group.

    The merge θ0 + Δᵀα is computed range by range: after the task passes
    every rank receives every task's δ on its own range of θ (one all-to-all
    per epoch), so each merge is the single-process kernel on that range, in
    task order, and one all-gather puts θ_α together on every rank: bit for
    bit the single-process θ_α."""

    group: "Group"
    assignment: Assignment

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        flat, rank = self.flat, self.group.rank
        self.rows = torch.tensor([self.names.index(name) for name in self.own], device=self.device)  # (K_r,)
        self.ranges = column_ranges(flat.param_numel, flat.numel, self.group.world_size)
        mine = self.ranges[rank]
        width = max(r.stop - r.start for r in self.ranges)
        # Every task's δ on this rank's range, in task order (K, N_r); the float
        # buffers' part of it, contiguous, where the range holds them (K, N_b).
        self.columns = torch.empty(len(self.names), mine.stop - mine.start, dtype=self.deltas.dtype,
                                   device=self.device)
        self.buffer_columns = self.columns[:, max(flat.param_numel - mine.start, 0):].contiguous()
        self.merged = torch.zeros(width, dtype=torch.float32, device=self.device)  # (W,): this range of θ_α
        self.gathered = torch.empty(self.group.world_size * width, dtype=torch.float32, device=self.device)

    def owned_tasks(self) -> List[str]:
        return self.assignment.tasks_of(self.group.rank)

    def train_epoch(self, epoch: int) -> EpochResult:
        result = super().train_epoch(epoch)
        self.check_identical(epoch, result)
        return result

    def task_passes(self, epoch: int) -> dict:
        """This rank's task passes; every task's mean loss on every rank; Δ's
        columns exchanged for the merge. Counters among the buffers
        (BatchNorm's num_batches_tracked) count every rank's batches."""
        counters = list(self.flat.other_buffers.values())
        before = [c.clone() for c in counters]
        parent = super().task_passes
        losses = {}
        for part in self.group.gather(f"the task passes of epoch {epoch + 1}", lambda: parent(epoch)):
            losses.update(part)
        if counters:
            moved = torch.cat([(c - b).reshape(-1).to(torch.int64) for c, b in zip(counters, before)])
            self.group.all_reduce("adding up the buffers' counters", moved)
            for c, b, m in zip(counters, before, moved.split([c.numel() for c in counters])):
                c.copy_(b + m.view_as(b).to(b.dtype))
        self.exchange_columns(epoch)
        return {name: losses[name] for name in self.names}

    def exchange_columns(self, epoch: int) -> None:
        """``columns`` ← every task's δ on this rank's range: each rank sends
        its rows' part of every range to that range's rank (as bytes, exact
        for every delta_dtype)."""
        size, width = self.deltas.element_size(), self.columns.shape[1]
        sent = torch.cat([self.deltas[:, r].reshape(-1) for r in self.ranges]).view(torch.uint8)
        owners = [self.assignment.tasks_of(q) for q in range(self.group.world_size)]
        received = torch.empty(self.columns.numel() * size, dtype=torch.uint8, device=self.device)
        self.group.all_to_all(f"exchanging Δ's columns in epoch {epoch + 1}", received, sent,
                              [len(tasks) * width * size for tasks in owners],
                              [len(self.own) * (r.stop - r.start) * size for r in self.ranges])
        start = 0
        for tasks in owners:
            block = received[start : start + len(tasks) * width * size].view(self.deltas.dtype)
            self.columns[[self.names.index(name) for name in tasks]] = block.view(len(tasks), width)
            start += len(tasks) * width * size
        self.buffer_columns.copy_(self.columns[:, self.columns.shape[1] - self.buffer_columns.shape[1]:])

    def merge(self, alphas: torch.Tensor) -> None:
        """θ ← θ0 + Δᵀα (float buffers: ``mean_buffers_``): this rank's range by
        the fused kernel over all K tasks in task order, then one all-gather."""
        alphas = alphas.detach().to(self.device)  # (K,)
        mine, width = self.ranges[self.group.rank], self.merged.numel()
        here = self.merged[: mine.stop - mine.start]  # (N_r,)
        here.copy_(self.theta0[mine])
        if here.numel():
            ops.merge_(here, self.columns, alphas)
        if self.buffer_columns.shape[1]:
            mean_buffers_(here[here.numel() - self.buffer_columns.shape[1]:], self.buffer_columns, alphas)
        self.group.all_gather("the merge θ0 + Δᵀα", self.gathered, self.merged)
        for rank, r in enumerate(self.ranges):
            self.flat.data[r].copy_(self.gathered[rank * width : rank * width + r.stop - r.start])

    def dev_loss(self, dev_batches: Sequence, shares: Sequence[float], gradient: bool = True) -> torch.Tensor:
        parent = super().dev_loss
        if self.group.dev_gradient == "once":
            value = self.group.once("the α-step's dev pass",
                                    lambda: parent(dev_batches, shares, gradient).item())
            if gradient:
                self.group.broadcast("broadcasting the dev gradient", self.flat.grad)
            return torch.tensor(value)
        mine = slice(self.group.rank, None, self.group.world_size)  # chunks r, r + P, ...
        values = self.group.gather("the α-step's dev pass",
                                   lambda: parent(dev_batches[mine], shares[mine], gradient).item())
        if gradient:
            self.group.all_reduce("adding up the dev gradient", self.flat.grad)
        loss = torch.zeros(())
        for value in values:  # in rank order, in float32: chunk order while there are at most two chunks
            loss += value
        return loss

    def alpha_gradient(self) -> torch.Tensor:
        grad = torch.zeros(len(self.names), device=self.device)  # (K,)
        grad[self.rows] = ops.dots(self.deltas, self.flat.grad)
        self.group.all_reduce("gathering Δ·g", grad)
        return grad.cpu()

    def check_identical(self, epoch: int, result: EpochResult) -> None:
        """Every rank's θ (a digest of its bytes, dtype and shape) and epoch record equal rank 0's."""
        record = {k: v for k, v in result.as_dict().items() if k != "alpha_step"}
        record["alpha_step"] = {k: v for k, v in (result.alpha_step or {}).items() if k != "seconds"}
        record["theta"] = checkpoint.digest(self.flat.data)
        record["counters"] = [c.tolist() for c in self.flat.other_buffers.values()]
        seen = self.group.all_gather_object(f"comparing the ranks after epoch {epoch + 1}", record)
        for rank, other in enumerate(seen):
            different = [key for key in record if other[key] != seen[0][key]]
            if different:
                raise DistributedError(
                    f"after epoch {epoch + 1}, rank {rank} holds another {different} than rank 0: the ranks "
                    "diverged, which they must never do (a non-deterministic kernel, or ranks on different "
                    "hardware or software). Fix: run every rank on the same kind of device with the same "
                    "torch and avil; please report it with both ranks' output.")
