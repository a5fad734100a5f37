"""The model's state as one flat vector: parameters, then floating-point buffers.

αVIL handles the whole model as one vector: θ0 is one copy, each δ_t one
subtraction into a row of Δ (K × N), the merge one call of ``avil.ops.merge_``
and ∇_α L one call of ``avil.ops.dots`` on the flat gradient. So every
parameter's ``.data`` becomes a view into ``FlatParameters.data`` (N,) and,
while bound, its ``.grad`` a view into ``FlatParameters.grad`` (N,): autograd
accumulates straight into the flat buffer and optimizers step on the views.

Model state is more than parameters. The floating-point buffers (BatchNorm's
running_mean and running_var, any float buffer a module registers) follow the
parameters in the same vector, so ``data`` is [θ | float buffers]:

- Snapshot and restore: whatever copies ``data`` (αVIL's θ0, every task
  pass's restart from θ0, a checkpoint, a resume) copies the buffers with θ.
  Each task pass therefore starts from θ0's running statistics instead of the
  ones the previous task pass left behind, so the task order does not matter.
- Merge (``merge_``): a buffer's δ_t is what task t's pass moved it by.
  Parameters move by the α-weighted sum of the task passes' moves,
  θ0 + Σ_t α_t δ_t (Algorithm 1); float buffers by the α-weighted mean,
  b0 + Σ_t α_t δ_t / K. A running statistic is an average of the data, not a
  trained quantity: K passes over data of one distribution each move it to
  that distribution's value, and the mean lands there while the sum
  overshoots K-fold. Measured on the toy suite with a BatchNorm MLP encoder
  (8 epochs, seeds 0 and 1): with the sum, the merged running_var went
  negative in most merges and αVIL's target test accuracy was 0.33 and 0.31
  (single_task 0.66 and 0.70); with the mean, no variance went negative and
  it was 0.79 and 0.55. A plain ``avil.ops.merge_`` over ``data`` applies the
  sum to the buffers too; ``merge_`` applies the rule (``mean_buffers_``).
- Variances stay variances: a merged running_var can still come out below 0
  (α extrapolating). Every float buffer named ``running_var`` is clamped at
  0, in place, right before its module runs (a forward pre-hook), so a model
  is always evaluated with valid statistics (BatchNorm adds its eps to a
  variance of 0). The clamp writes through ``.data``, so it never bumps an
  autograd version counter.
- Gradients: the gradient buffer has zeros on the buffer part, so the
  α-gradient Δ·∇_θL (``avil.ops.dots``) sees only the parameters.

Buffers that are not floating point (BatchNorm's ``num_batches_tracked``, a
counter) are not part of θ: they are never snapshotted, restored or merged,
so they count every batch of every task pass; they are checkpointed by name
(``other_buffers``) and restored on resume, so a resumed run equals an
uninterrupted one.
"""
from typing import Dict, Iterable, List, Tuple

import torch
from torch import nn

from . import ops


def _clamp_running_var(module: nn.Module, args) -> None:
    """Forward pre-hook: a merged running variance below 0 becomes 0."""
    module.running_var.data.clamp_(min=0)


def mean_buffers_(buffers: torch.Tensor, deltas: torch.Tensor, alphas: torch.Tensor) -> None:
    """The float buffers' merge rule, in place: ``buffers`` (M,), which
    ``ops.merge_`` left at b0 + Σ_t α_t δ_t, become b0 + Σ_t α_t δ_t / K
    (module docstring). deltas (K, M): each task's move of these buffers; α (K,).
    The one place the rule is written: ``FlatParameters.merge_`` and the
    task-parallel merge (avil/distributed/runner.py) both call it."""
    moved = deltas.to(torch.float32).t() @ alphas  # (M,): Σ_t α_t δ_t
    buffers.sub_(moved, alpha=1 - 1 / deltas.shape[0])


class FlatParameters:
    """Rebinds every parameter, then every floating-point buffer, of ``module``
    to a view of one float32 buffer ``data`` (N,).

    Parameters keep their order in ``module.parameters()``, so a sub-module's
    parameters (the encoder's, one head's) form one contiguous range
    (``range_of``); ``data[:param_numel]`` is θ and ``data[param_numel:]`` the
    float buffers.
    """

    def __init__(self, module: nn.Module):
        named_params = list(module.named_parameters())
        self.params: List[nn.Parameter] = [p for _, p in named_params]
        if not named_params:
            raise ValueError("the model has no parameters: nothing to train. Fix: give the encoder or the "
                             "heads at least one nn.Parameter.")
        buffers = [(name, b) for name, b in module.named_buffers() if b is not None]
        float_buffers = [(name, b) for name, b in buffers if b.is_floating_point()]
        # Counters and the like: checkpointed, never merged (module docstring).
        self.other_buffers: Dict[str, torch.Tensor] = {
            name: b for name, b in buffers if not b.is_floating_point()}
        for kind, name, t in [("parameter", n, p) for n, p in named_params] + \
                             [("buffer", n, b) for n, b in float_buffers]:
            if t.dtype != torch.float32:
                raise ValueError(
                    f"{kind} '{name}' is {t.dtype}; αVIL keeps θ and the float buffers in float32. "
                    "Fix: call .float() on the encoder and every head before avil.fit."
                )
        devices = {t.device for _, t in named_params + buffers}
        if len(devices) != 1:
            raise ValueError(f"the model's parameters and buffers live on several devices {devices}. "
                             "Fix: move the encoder and every head to one device (FitConfig.device does it).")
        device = devices.pop()
        self.param_numel = sum(p.numel() for p in self.params)
        self.numel = self.param_numel + sum(b.numel() for _, b in float_buffers)
        self.data = torch.empty(self.numel, dtype=torch.float32, device=device)  # (N,)
        self.grad = torch.zeros(self.numel, dtype=torch.float32, device=device)  # (N,): 0 on the buffers
        self._offsets = {}
        # (name, owner module, attribute, start, stop) of every tensor in data, in order.
        self._spans: List[Tuple[str, nn.Module, str, int, int]] = []
        owners = dict(module.named_modules())
        offset = 0
        with torch.no_grad():
            for name, t in named_params + float_buffers:
                n = t.numel()
                self.data[offset : offset + n].copy_(t.data.reshape(-1))
                # Swapping .data keeps the tensor's own autograd version counter:
                # writes into the flat buffer never invalidate a saved tensor.
                t.data = self.data[offset : offset + n].view_as(t)
                owner, _, attr = name.rpartition(".")
                self._spans.append((name, owners[owner], attr, offset, offset + n))
                self._offsets[id(t)] = (offset, offset + n)
                offset += n
            self._grad_views = [self.grad[a:b].view_as(p)
                                for p, (_, _, _, a, b) in zip(self.params, self._spans)]
        for name, _ in float_buffers:
            owner, _, attr = name.rpartition(".")
            if attr == "running_var":
                owners[owner].register_forward_pre_hook(_clamp_running_var)
        self.layout: List[Tuple[str, Tuple[int, ...]]] = (
            [(n, tuple(t.shape)) for n, t in named_params + float_buffers]
            + [(n, tuple(t.shape)) for n, t in self.other_buffers.items()])

    def range_of(self, module: nn.Module) -> slice:
        """The slice of the flat buffer holding ``module``'s parameters
        (contiguous); an empty slice for a module without parameters."""
        spans = sorted(self._offsets[id(p)] for p in module.parameters())
        if not spans:
            return slice(0, 0)
        start, stop = spans[0][0], spans[-1][1]
        if sum(b - a for a, b in spans) != stop - start:
            raise ValueError("the module's parameters are not contiguous in the flat buffer")
        return slice(start, stop)

    def bind_grads(self, params: Iterable[nn.Parameter]) -> None:
        """Zero the flat gradient, point the given parameters' ``.grad`` at it and
        set every other ``.grad`` to None, so optimizers skip the parameters a
        task does not use (as after ``zero_grad(set_to_none=True)``)."""
        wanted = {id(p) for p in params}
        self.grad.zero_()
        for p, view in zip(self.params, self._grad_views):
            p.grad = view if id(p) in wanted else None

    def load_(self, vector: torch.Tensor) -> None:
        """θ and the float buffers ← vector (N,), in place: every view sees it."""
        self.data.copy_(vector)

    def merge_(self, theta0: torch.Tensor, deltas: torch.Tensor, alphas: torch.Tensor) -> None:
        """data ← the αVIL merge of θ0 (N,) and Δ (K, N) with α (K,), in place:
        parameters θ0 + Δᵀα, float buffers b0 + Δᵀα / K (module docstring)."""
        alphas = alphas.detach()
        self.data.copy_(theta0)
        ops.merge_(self.data, deltas, alphas)
        if self.numel > self.param_numel:
            mean_buffers_(self.data[self.param_numel:], deltas[:, self.param_numel:], alphas)

    def name_at(self, index: int) -> str:
        """Which parameter or buffer holds ``data[index]`` (for error messages)."""
        for name, owner, attr, start, stop in self._spans:
            if start <= index < stop:
                kind = "parameter" if start < self.param_numel else "buffer"
                return f"{kind} '{name}'"
        raise IndexError(f"index {index} is outside the flat buffer (N = {self.numel})")

    def unbound(self) -> List[str]:
        """Names of the parameters and float buffers the model no longer keeps in
        the flat buffer: a module that assigns a new tensor to a buffer
        (``self.stat = ...``) instead of updating it in place leaves the flat
        buffer, and with it αVIL's merge and the checkpoints."""
        base, size = self.data.data_ptr(), self.data.element_size()
        lost = []
        for name, owner, attr, start, _ in self._spans:
            current = getattr(owner, attr, None)
            if not isinstance(current, torch.Tensor) or current.data_ptr() != base + start * size:
                lost.append(name)
        return lost

    def other_buffers_state(self) -> Dict[str, torch.Tensor]:
        """Copies of the non-float buffers, by name (for a checkpoint)."""
        return {name: b.detach().cpu().clone() for name, b in self.other_buffers.items()}

    def load_other_buffers_(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore the non-float buffers from ``other_buffers_state()``, in place."""
        with torch.no_grad():
            for name, b in self.other_buffers.items():
                b.copy_(state[name])
