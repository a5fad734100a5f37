"""Parameters as views into one flat buffer.

αVIL handles the whole model as one vector: θ0 is one copy, each δ_t one
subtraction into a row of Δ (K × N), the merge one call of ``avil.ops.merge_``
and ∇_α L one call of ``avil.ops.dots`` on the flat gradient. So every
parameter's ``.data`` becomes a view into ``FlatParameters.data`` (N,) and,
while bound, its ``.grad`` a view into ``FlatParameters.grad`` (N,): autograd
accumulates straight into the flat buffer and optimizers step on the views.
"""
from typing import Iterable, List

import torch
from torch import nn


class FlatParameters:
    """Rebinds every parameter of ``module`` to a view of one float32 buffer.

    Parameters keep their order in ``module.parameters()``, so a sub-module's
    parameters (the encoder's, one head's) form one contiguous range.
    Buffers (e.g. batch-norm statistics) are not parameters and are not merged.
    """

    def __init__(self, module: nn.Module):
        self.params: List[nn.Parameter] = list(module.parameters())
        for name, p in module.named_parameters():
            if p.dtype != torch.float32:
                raise ValueError(
                    f"parameter '{name}' is {p.dtype}; αVIL keeps θ in float32. "
                    "Fix: call model.float() before avil.fit."
                )
        devices = {p.device for p in self.params}
        if len(devices) != 1:
            raise ValueError(f"parameters live on several devices {devices}; move the model to one.")
        numel = sum(p.numel() for p in self.params)
        device = devices.pop()
        self.data = torch.empty(numel, dtype=torch.float32, device=device)  # (N,)
        self.grad = torch.zeros(numel, dtype=torch.float32, device=device)  # (N,)
        self._grad_views = []
        self._offsets = {}
        offset = 0
        with torch.no_grad():
            for p in self.params:
                n = p.numel()
                self.data[offset : offset + n].copy_(p.data.reshape(-1))
                p.data = self.data[offset : offset + n].view_as(p)
                self._grad_views.append(self.grad[offset : offset + n].view_as(p))
                self._offsets[id(p)] = (offset, offset + n)
                offset += n
        self.numel = numel

    def range_of(self, module: nn.Module) -> slice:
        """The slice of the flat buffer holding ``module``'s parameters (contiguous)."""
        spans = sorted(self._offsets[id(p)] for p in module.parameters())
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
        """θ ← vector (N,), in place: every parameter view sees it."""
        self.data.copy_(vector)
