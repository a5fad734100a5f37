"""αVIL: α-Variable Importance Learning.

Kourdis, Gordon-Hall, Gorinski, "αVIL: Learning to Leverage Auxiliary Tasks
for Multitask Learning", arXiv 2405.07769, Algorithm 1. Line by line:

    θ0 ← θ                                    (a copy of the flat buffer)
    for t in T: θ_t ← θ0 trained on a ρ-sample of D_t with loss w_t·L_t;
                δ_t ← θ_t − θ0                (row t of Δ, K × N)
    α ← α_init; minimise L_t*(D_dev, θ0 + Σ_t α_t δ_t) over α
                                              (avil.alpha_step.solve; the merge is
                                               FlatParameters.merge_, ∇_α L = Δ·∇_θL avil.ops.dots)
    θ ← θ0 + Σ_t α_t δ_t;  w_t ← update(w_t, α_t)

The paper sketches the α-tuning as a few gradient steps from α = 1; we
solve it as an optimisation problem inside a trust region (docs/design.md,
"The α-step", and avil/alpha_step.py), on a fixed per-epoch subset of the
target's dev set, in eval mode (no dropout). Every knob is a field of
``FitConfig``: the solver, the trust region, the dev subset, α_init and the
weight rule. Task weights are kept inside ``[weight_min, weight_max]`` and
used as loss scales of the task passes: a weight at or below 0 would turn a
task pass into loss ascent, or kill the task for good (its δ is 0, so α
could never bring it back). Each task keeps its own optimizer, whose state
persists across epochs. With Adam as the task optimizer a constant loss scale
barely changes δ_t (Adam is scale-invariant), so there the weights act mostly
through α; with ``optimizer="sgd"`` they scale the task passes directly.

Task-parallel runs (``torchrun``, avil/distributed/) reuse this class: the
pieces they distribute are its hooks, ``owned_tasks`` (whose passes run here
and whose rows of Δ are held here), ``merge`` (θ ← θ0 + Δᵀα), ``dev_loss``
(the target's dev loss and its gradient ∇_θL) and ``alpha_gradient``
(Δ·∇_θL); in one process they do what Algorithm 1 says, on every task.
"""
import math
from typing import List, Sequence

import torch

from .. import ops
from ..alpha_step import solve
from ..data import Stream, batches, epoch_generator, sample_size, to_device
from .base import EpochResult, Method, TrainingError
from .weight_rules import updated_weights

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

class AlphaVIL(Method):
    name = "avil"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.own = self.owned_tasks()  # the tasks trained here; row k of Δ is task own[k]
        # Per-task optimizer state persists across epochs (each task pass
        # continues its own trajectory from the merged θ0).
        self.optimizers = {name: self.make_optimizer(self.task_params[name], key=name) for name in self.own}
        n, k = self.flat.numel, len(self.own)
        # θ0 must be a copy, never a view of the live buffer: training writes
        # into flat.data, and a view would make every δ zero.
        self.theta0 = torch.empty(n, dtype=torch.float32, device=self.device)  # (N,)
        self.deltas = torch.empty(k, n, dtype=DTYPES[self.config.delta_dtype], device=self.device)  # (K, N)

    def train_epoch(self, epoch: int) -> EpochResult:
        self.theta0.copy_(self.flat.data)
        losses = self.task_passes(epoch)
        alphas, diagnostics = self.tune_alphas(epoch)  # (K,)
        self.merge(alphas)
        alpha = dict(zip(self.names, alphas.tolist()))
        self.task_weights = updated_weights(self.task_weights, alpha, epoch, self.config, self.target,
                                            diagnostics.loss_without, diagnostics.loss_final)
        return EpochResult(task_weights=dict(self.task_weights), train_loss=losses, lr=self.epoch_lrs(epoch),
                           alphas=alpha, alpha_step=diagnostics.to_dict())

    def steps_per_epoch(self, key: str) -> int:
        """Task ``key``'s pass: its ρ-sample in batches (its optimizer's steps per epoch)."""
        return self.num_batches(sample_size(len(self.tasks[key].train), self.config.rho))

    def schedule_keys(self) -> List[str]:
        return list(self.names)  # every task's, also those another process trains

    def task_passes(self, epoch: int) -> dict:
        """Algorithm 1's inner loop over tasks: fill Δ, one row per task (of ``own``)."""
        sums, counts = {}, {}
        for k, name in enumerate(self.own):
            self.flat.load_(self.theta0)
            order = self.order(name, epoch, fraction=self.config.rho)
            scale = self.task_weights[name]  # inside [weight_min, weight_max] (weight_rules)
            total = torch.zeros((), device=self.device)
            bar = self.progress(total=self.num_batches(len(order)), desc=name)
            for batch in self.batches(name, order):
                total += self.step(self.optimizers[name], name, batch, scale=scale)
                bar.update()
            bar.close()
            torch.sub(self.flat.data, self.theta0, out=self.deltas[k])  # δ_t (N,)
            sums[name], counts[name] = total, self.num_batches(len(order))
        return self.mean_losses(sums, counts, epoch)

    def initial_alphas(self) -> torch.Tensor:
        if self.config.alpha_init == "weights":
            return torch.tensor([self.task_weights[name] for name in self.names])  # (K,)
        return torch.ones(len(self.names))  # (K,)

    def dev_subset(self, epoch: int) -> torch.Tensor:
        """The α-step's target dev examples this epoch: a seeded sample of
        ``alpha_dev_size`` (all of them when None or larger than the set)."""
        n = len(self.tasks[self.target].dev)
        size = n if self.config.alpha_dev_size is None else min(self.config.alpha_dev_size, n)
        order = torch.randperm(n, generator=epoch_generator(self.config.seed, epoch, Stream.ALPHA_DEV))
        return order[:size].sort().values

    def tune_alphas(self, epoch: int):
        """The α-step: minimise the target's dev loss at θ0 + Σ α_t δ_t.
        Returns α (K,) and its AlphaStep diagnostics."""
        cfg = self.config
        target = self.tasks[self.target]
        subset = self.dev_subset(epoch)
        # Collated once: every evaluation of the objective reuses them.
        dev_batches = [to_device(batch, self.device)
                       for batch in batches(target.dev, subset, cfg.eval_batch_size, target.collate_fn)]
        # each batch's share of the subset (batches cuts the same chunks, in order)
        shares = [len(idx) / len(subset) for idx in subset.split(cfg.eval_batch_size)]

        def objective(alphas: torch.Tensor):
            """L_dev(θ0 + Δᵀα) on the subset and ∇_α L = Δ·∇_θL (K,)."""
            self.merge(alphas)  # θ_α
            value = self.dev_loss(dev_batches, shares).item()
            if not math.isfinite(value):
                raise TrainingError(
                    f"Task '{self.target}': the dev loss the α-step minimises is {value} at α = "
                    f"{[round(a, 4) for a in alphas.tolist()]} in epoch {epoch + 1}. Training stopped; the "
                    "last checkpoint (if any) is kept. Fix: check the target's dev split for non-finite "
                    "inputs or invalid labels, or narrow the trust region (FitConfig.alpha_max).")
            return value, self.alpha_gradient()

        self.model.eval()
        alphas, step = solve(objective, self.initial_alphas(), self.names, solver=cfg.alpha_solver,
                             alpha_min=cfg.alpha_min, alpha_max=cfg.alpha_max, radius=cfg.alpha_radius,
                             penalty=cfg.alpha_penalty, max_iter=cfg.alpha_max_iter, tol=cfg.alpha_tol,
                             steps=cfg.alpha_steps, lr=cfg.alpha_lr)
        if cfg.alpha_ablation or cfg.weight_update == "contribution":
            # The per-delta ablation: the dev loss at the chosen α with one task's update dropped.
            step.loss_without = {}
            for k, name in enumerate(self.names):
                self.merge(alphas * (torch.arange(len(alphas)) != k))
                step.loss_without[name] = self.dev_loss(dev_batches, shares, gradient=False).item()
        return alphas, step

    # -- the hooks a task-parallel run distributes (avil/distributed/runner.py)
    def owned_tasks(self) -> List[str]:
        """The tasks whose passes this process trains and whose rows of Δ it holds: all of them."""
        return list(self.names)

    def merge(self, alphas: torch.Tensor) -> None:
        """θ ← θ0 + Δᵀα (float buffers: b0 + Δᵀα / K, FlatParameters.merge_); α (K,)."""
        self.flat.merge_(self.theta0, self.deltas, alphas.to(self.device))

    def dev_loss(self, dev_batches: Sequence, shares: Sequence[float], gradient: bool = True) -> torch.Tensor:
        """The target's dev loss at the current θ over the given (x, y) chunks, each
        chunk's mean weighted by its share (a 0-dim tensor); with ``gradient``,
        its gradient ∇_θL is left in ``flat.grad``."""
        target = self.tasks[self.target]
        self.flat.bind_grads(self.task_params[self.target])
        loss = torch.zeros((), device=self.device)
        with torch.set_grad_enabled(gradient):
            for (x, y), share in zip(dev_batches, shares):
                # Each chunk's mean loss weighted by its share: the mean over the subset.
                chunk_loss = target.loss_fn(self.model(x, self.target), y) * share
                if gradient:
                    chunk_loss.backward()
                loss += chunk_loss.detach()
        return loss

    def alpha_gradient(self) -> torch.Tensor:
        """∇_α L = Δ·∇_θL (K,), on the CPU, from the gradient in ``flat.grad``."""
        return ops.dots(self.deltas, self.flat.grad).cpu()
