"""αVIL: α-Variable Importance Learning.

Kourdis, Gordon-Hall, Gorinski, "αVIL: Learning to Leverage Auxiliary Tasks
for Multitask Learning", arXiv 2405.07769, Algorithm 1. Line by line:

    θ0 ← θ                                    (a copy of the flat buffer)
    for t in T: θ_t ← θ0 trained on a ρ-sample of D_t with loss w_t·L_t;
                δ_t ← θ_t − θ0                (row t of Δ, K × N)
    α ← 1;  repeat alpha_steps times:
        θ_α ← θ0 + Σ_t α_t δ_t                (avil.ops.merge_)
        α ← α − η_α ∇_α L_t*(D_dev, θ_α)      (∇_α L = Δ·∇_θL: avil.ops.dots)
    θ ← θ0 + Σ_t α_t δ_t;  w_t ← w_t + (α_t − 1)

Choices that are ours where the text we could read is silent (all knobs of
``FitConfig``): α is optimised with Adam by default (the α-gradient is tiny,
see ``FitConfig``); the dev loss for α is taken in eval mode (no dropout), on
``alpha_dev_batches`` batches per step; each task keeps its own optimizer,
whose state persists across epochs; weights enter as floored loss scales.
With Adam as the task optimizer a constant loss scale barely changes δ_t
(Adam is scale-invariant), so there the weights act mostly through α; with
``optimizer="sgd"`` they scale the task passes directly.
"""
import torch

from .. import ops
from ..data import Stream, epoch_generator, to_device
from .base import Method

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class AlphaVIL(Method):
    name = "avil"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Per-task optimizer state persists across epochs (each task pass
        # continues its own trajectory from the merged θ0).
        self.optimizers = {name: self.make_optimizer(self.task_params[name]) for name in self.names}
        n, k = self.flat.numel, len(self.names)
        # θ0 must be a copy, never a view of the live buffer: training writes
        # into flat.data, and a view would make every δ zero.
        self.theta0 = torch.empty(n, dtype=torch.float32, device=self.device)  # (N,)
        self.deltas = torch.empty(k, n, dtype=DTYPES[self.config.delta_dtype], device=self.device)  # (K, N)

    def train_epoch(self, epoch: int) -> dict:
        cfg = self.config
        self.theta0.copy_(self.flat.data)
        losses = self.task_passes(epoch)
        alphas = self.tune_alphas(epoch)  # (K,)
        self.flat.load_(self.theta0)
        ops.merge_(self.flat.data, self.deltas, alphas)
        alpha = dict(zip(self.names, alphas.tolist()))
        for name, a in alpha.items():
            w = self.task_weights[name]
            self.task_weights[name] = {
                "additive": w + (a - 1.0), "multiplicative": w * a, "replace": a,
            }[cfg.weight_update]
        return {"task_weights": dict(self.task_weights), "alphas": alpha, "train_loss": losses}

    def task_passes(self, epoch: int) -> dict:
        """Algorithm 1's inner loop over tasks: fill Δ, one row per task."""
        sums, counts = {}, {}
        for k, name in enumerate(self.names):
            self.flat.load_(self.theta0)
            order = self.order(name, epoch, fraction=self.config.rho)
            scale = self.loss_scale(name)
            total = torch.zeros((), device=self.device)
            bar = self.progress(total=self.num_batches(len(order)), desc=name)
            for batch in self.batches(name, order):
                total += self.step(self.optimizers[name], name, batch, scale=scale)
                bar.update()
            bar.close()
            torch.sub(self.flat.data, self.theta0, out=self.deltas[k])  # δ_t (N,)
            sums[name], counts[name] = total, self.num_batches(len(order))
        return self.mean_losses(sums, counts, epoch)

    def tune_alphas(self, epoch: int) -> torch.Tensor:
        """α-tuning on the target's dev loss at θ0 + Σ α_t δ_t. Returns α (K,)."""
        cfg = self.config
        if cfg.alpha_init == "weights":
            init = [self.task_weights[name] for name in self.names]
        else:
            init = [1.0] * len(self.names)
        alphas = torch.tensor(init, dtype=torch.float32, device=self.device)  # (K,)
        if cfg.alpha_steps == 0:
            return alphas
        alphas.requires_grad_(True)
        opt_cls = torch.optim.Adam if cfg.alpha_optimizer == "adam" else torch.optim.SGD
        optimizer = opt_cls([alphas], lr=cfg.alpha_lr)
        dev = self.tasks[self.target].dev
        dev_order = torch.randperm(len(dev), generator=epoch_generator(cfg.seed, epoch, Stream.ALPHA_DEV))
        per_step = cfg.alpha_dev_batches * cfg.batch_size
        self.model.eval()
        for step in range(cfg.alpha_steps):
            self.flat.load_(self.theta0)
            ops.merge_(self.flat.data, self.deltas, alphas.detach())  # θ_α
            start = (step * per_step) % len(dev)
            idx = torch.cat([dev_order, dev_order])[start : start + min(per_step, len(dev))]
            self.flat.bind_grads(self.task_params[self.target])
            n_batches = 0
            for batch in self.batches(self.target, idx, split="dev"):
                x, y = to_device(batch, self.device)
                self.tasks[self.target].loss_fn(self.model(x, self.target), y).backward()
                n_batches += 1
            g = self.flat.grad / n_batches  # ∇_θ L_t*(θ_α) (N,)
            alphas.grad = ops.dots(self.deltas, g)  # ∇_α L = Δ·g (K,)
            optimizer.step()
        return alphas.detach()
