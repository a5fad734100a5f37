"""diw: auxiliary examples importance-weighted towards the target's dev data.

Fang, Lu, Niu, Sugiyama, "Rethinking Importance Weighting for Deep Learning
under Distribution Shift", NeurIPS 2020 (Dynamic Importance Weighting, DIW).
DIW handles a shift between the training and the test distribution of one
task: it alternates weight estimation (kernel mean matching, KMM, between
training and validation data in the feature space of the network being
trained) and weighted training, so the features the weights are estimated in
improve with the classifier, and the classifier with the weights.

Here (target-focused multitask learning) the "training data" are the
auxiliary tasks' training examples and the "test-like data" the target's
dev set; each auxiliary example's loss is weighted by how much its encoder
features look like the target's. Every epoch:

1. Features f(x) = model.features(x), in eval mode, without gradients: of up
   to ``diw_max_dev`` target dev examples (Z_dev, (m, F)) and of up to
   ``diw_max_aux`` auxiliary training examples pooled over all auxiliaries
   (Z_fit, (s, F)), both sampled afresh each epoch from seeded generators.
2. Gaussian kernel k(a, b) = exp(−‖a − b‖² / (2σ²)), σ the median pairwise
   distance of Z_fit ∪ Z_dev (median heuristic).
3. KMM in closed form, ridge-regularised instead of the original quadratic
   program: minimising ‖(1/s) Σ_i β_i φ(z_i) − (1/m) Σ_j φ(z'_j)‖² + λ‖β‖²
   gives (K/s + λI) β = κ̄ with K = k(Z_fit, Z_fit) (s, s) and
   κ̄_i = mean_j k(z_i, z'_j) (s,); λ = ``diw_ridge``.
4. Every auxiliary example x (not only the fitted ones) gets
   β(x) = (κ̄(x) − k(x, Z_fit) β / s) / λ, the expansion the stationarity
   condition gives, exact on the fitted points; it is computed batch by
   batch, so memory is O(batch · (s + m)) and no feature matrix of the
   whole data is kept.
5. β is clipped to [0, B] (B = ``diw_bound``) and rescaled to mean 1 over all
   auxiliary examples jointly (clip and rescale alternate until both hold),
   so the mean weight of one auxiliary task says how target-like its data
   are compared with the others': that per-task mean is what
   History.task_weights records (target: 1). If no example is target-like
   at all (every β ≤ 0), all weights are 1.

Training then follows ``uniform``'s schedule exactly (batches of all tasks
interleaved in a seeded order, one shared optimizer): an auxiliary batch's
loss is mean_i w_i · ℓ_i, with ℓ_i = ``loss_fn(out, y, reduction="none")``
(per-example losses with extra dimensions, e.g. per token, are first averaged
over them); target batches keep weight 1. The recorded train_loss is the
unweighted mean loss, comparable across methods.

How this differs from the original DIW (as we read the paper):
- Original: one task; train vs. test distribution of the same task. Here:
  auxiliary tasks vs. the target task's dev data; target examples are not
  weighted at all.
- Original: weights are estimated per mini-batch, pairing each training
  mini-batch with a validation mini-batch, during training. Here: once per
  epoch, on a subsample, then frozen for that epoch (one extra forward pass
  over the auxiliary data per epoch instead of a QP per step; the price is
  that the weights lag the features' drift within the epoch). So the
  weights History.task_weights records for an epoch are those used in it.
- Original: KMM solved as a QP with box constraints 0 ≤ β ≤ B and
  |mean β − 1| ≤ ε. Here: ridge closed form, then clip and rescale.
- Original: under label noise the matching is class-conditional and the
  transformation may be the loss value or a hidden layer's output. Here:
  auxiliary tasks have their own label spaces, so only the shared encoder's
  features are matched (a covariate-shift correction: an auxiliary whose
  inputs look like the target's but whose labels are useless, as the toy
  suite's ``noise``, is not down-weighted).
"""
from typing import Dict, Iterator

import torch

from ..data import Stream, batches, epoch_generator, to_device
from .base import Method, Slot


def median_bandwidth(points: torch.Tensor) -> float:
    """σ of the median heuristic: the median pairwise distance of ``points`` (n, F)."""
    d = torch.pdist(points)  # (n(n−1)/2,): each pair once
    sigma = d.median().item() if d.numel() else 0.0
    # All points equal: any bandwidth gives the same (constant) kernel.
    return sigma if sigma > 0 else 1.0


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    """k(a_i, b_j) = exp(−‖a_i − b_j‖² / (2σ²)), (n, F) × (m, F) → (n, m)."""
    return torch.exp(-torch.cdist(a, b).square() / (2 * sigma ** 2))


def clip_normalise(beta: torch.Tensor, bound: float, iterations: int = 100) -> torch.Tensor:
    """β clipped to [0, bound] and rescaled to mean 1 (alternating until both hold)."""
    w = beta.clamp(0.0, bound)
    if not w.sum() > 0:
        return torch.ones_like(beta)
    for _ in range(iterations):
        w = w / w.mean()
        if w.max() <= bound * (1 + 1e-6):
            break
        w = w.clamp(max=bound)
    return w


class DIW(Method):
    name = "diw"
    # What History.task_weights holds for this method: figures label their axis with it.
    weight_label = "mean example\nweight (KMM)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.optimizers = {"model": self.make_optimizer(self.model.parameters())}
        # Sorted: the pooled sample of auxiliary examples does not depend on the task list's order.
        self.aux = sorted(name for name in self.names if name != self.target)
        # The last estimate, {aux task: (n_train,)}, kept for inspection.
        self.example_weights: Dict[str, torch.Tensor] = {}
        self.check_losses()

    @torch.no_grad()
    def check_losses(self) -> None:
        """Fail before training if an auxiliary loss_fn has no per-example form."""
        self.model.eval()
        for name in self.aux:
            t = self.tasks[name]
            n = min(2, len(t.train))
            x, y = to_device(next(batches(t.train, torch.arange(n), n, t.collate_fn)), self.device)
            try:
                loss = t.loss_fn(self.model(x, name), y, reduction="none")
            except TypeError as err:
                raise ValueError(
                    f"Task '{name}': method 'diw' weights every example's loss, but its loss_fn does not "
                    f"accept reduction='none' ({err}). Fix: give it a `reduction` argument, as "
                    "F.cross_entropy and F.mse_loss have."
                ) from err
            if loss.dim() == 0 or loss.shape[0] != n:
                raise ValueError(
                    f"Task '{name}': loss_fn(out, y, reduction='none') returned shape {tuple(loss.shape)}; "
                    f"method 'diw' needs one loss per example (first dimension {n}). "
                    "Fix: return the unreduced per-example losses."
                )

    # -- weight estimation -------------------------------------------------
    @torch.no_grad()
    def features(self, task: str, split: str, indices: torch.Tensor):
        """Encoder features of ``task``'s ``split`` at ``indices``, chunk by chunk, each (B, F)."""
        self.model.eval()
        t = self.tasks[task]
        for batch in batches(getattr(t, split), indices, self.config.eval_batch_size, t.collate_fn):
            x, _ = to_device(batch, self.device)
            yield self.model.features(x).flatten(1).float()

    @torch.no_grad()
    def estimate_weights(self, epoch: int) -> Dict[str, torch.Tensor]:
        """Per-example weights {aux task: (n_train,)}, mean 1 over all auxiliary examples."""
        cfg = self.config
        dev = self.tasks[self.target].dev
        dev_idx = torch.randperm(len(dev), generator=epoch_generator(cfg.seed, epoch, Stream.DIW_DEV))[: cfg.diw_max_dev]
        z_dev = torch.cat(list(self.features(self.target, "dev", dev_idx)))  # (m, F)

        sizes = [len(self.tasks[name].train) for name in self.aux]
        starts = torch.tensor([0] + sizes).cumsum(0)  # pooled index of each task's first example
        pooled = torch.randperm(sum(sizes), generator=epoch_generator(cfg.seed, epoch, Stream.DIW_AUX))
        pooled = pooled[: cfg.diw_max_aux].sort().values
        z_fit = []
        for j, name in enumerate(self.aux):
            mine = pooled[(pooled >= starts[j]) & (pooled < starts[j + 1])] - starts[j]
            if len(mine):
                z_fit += list(self.features(name, "train", mine))
        z_fit = torch.cat(z_fit)  # (s, F)
        s = len(z_fit)

        sigma = median_bandwidth(torch.cat([z_fit, z_dev]))
        lam = cfg.diw_ridge
        gram = gaussian_kernel(z_fit, z_fit, sigma) / s  # K/s (s, s)
        kappa = gaussian_kernel(z_fit, z_dev, sigma).mean(dim=1)  # κ̄ (s,)
        beta = torch.linalg.solve(gram + lam * torch.eye(s, device=gram.device), kappa)  # (s,)

        raw = []  # β(x) of every auxiliary example, task by task, chunk by chunk
        for name in self.aux:
            for z in self.features(name, "train", torch.arange(len(self.tasks[name].train))):  # (B, F)
                expansion = gaussian_kernel(z, z_fit, sigma) @ beta / s  # (B,)
                raw.append((gaussian_kernel(z, z_dev, sigma).mean(dim=1) - expansion) / lam)
        weights = clip_normalise(torch.cat(raw), cfg.diw_bound)  # (Σ n_a,)
        return dict(zip(self.aux, weights.split(sizes)))

    # -- training ------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        if self.aux:
            self.example_weights = self.estimate_weights(epoch)
            for name in self.aux:
                self.task_weights[name] = self.example_weights[name].mean().item()

    def train_slot(self, task: str, streams: Dict[str, Iterator[Slot]]) -> Dict[str, torch.Tensor]:
        """A target batch at weight 1; an auxiliary batch weighted per example."""
        idx, batch = next(streams[task])
        optimizer = self.optimizers["model"]
        if task == self.target:
            return {task: self.step(optimizer, task, batch)}
        return {task: self.weighted_step(optimizer, task, batch, self.example_weights[task][idx])}

    def weighted_step(self, optimizer, task: str, batch, weights: torch.Tensor) -> torch.Tensor:
        """One optimizer step on mean_i w_i ℓ_i; returns the unweighted mean loss (detached)."""
        self.model.train()
        x, y = to_device(batch, self.device)
        self.flat.bind_grads(self.task_params[task])
        with self.autocast():
            per_example = self.tasks[task].loss_fn(self.model(x, task), y, reduction="none")
        per_example = per_example.reshape(len(weights), -1).mean(dim=1)  # (B,)
        optimizer.backward((per_example * weights.to(per_example.device)).mean())
        optimizer.step()
        return per_example.mean().detach()
