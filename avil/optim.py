"""One optimizer step as a fine-tuning run takes it (docs/design.md §1).

``Stepper`` bundles what turns a loss into a parameter update: the optimizer
(Adam, AdamW with decoupled weight decay, or SGD with momentum), the
learning-rate schedule with linear warmup, gradient clipping and, under fp16,
a gradient scaler. The names follow ``transformers.TrainingArguments``
(``weight_decay``, ``lr_scheduler_type``, ``warmup_ratio``, ``max_grad_norm``,
``bf16``, ``fp16``), and so do the rules:

- the schedule counts optimizer steps: step s (0-based) of T = epochs × steps
  per epoch runs at ``lr · factor(s)``, factor rising linearly from 0 over the
  first ⌈warmup_ratio · T⌉ steps, then constant, linear to 0 or cosine to 0;
- weight decay skips biases and the parameters of normalisation layers.

Every optimizer of a method has its own Stepper, so under αVIL each task's
schedule runs over its own task passes. A Stepper's state (the optimizer's,
its step count, the scaler's) is part of the method's checkpoint, so a
resumed run continues the schedule where it stopped.
"""
import contextlib
import math
from typing import Iterable, Set

import torch
from torch import nn

from .config import FitConfig

# Normalisation layers, whose weights are not decayed (transformers' rule).
NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.LocalResponseNorm, nn.modules.batchnorm._NormBase)


def decayed_parameters(model: nn.Module) -> Set[int]:
    """ids of the parameters AdamW's weight decay applies to: all but biases and
    the parameters of normalisation layers (torch's, or any module whose class
    name says norm, as transformers' RMSNorm classes do). Names in the module
    path (a task head called "norm") do not count."""
    decayed = set()
    for module in model.modules():
        if isinstance(module, NORM_LAYERS) or "norm" in type(module).__name__.lower():
            continue
        for name, param in module.named_parameters(recurse=False):
            if "bias" not in name.lower():
                decayed.add(id(param))
    return decayed


def schedule_factor(step: int, total: int, config: FitConfig) -> float:
    """The multiplier of the learning rate at optimizer step ``step`` (0-based) of ``total``."""
    warmup = math.ceil(config.warmup_ratio * total)
    if step < warmup:
        return step / warmup
    if config.lr_scheduler_type == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if config.lr_scheduler_type == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))  # cosine


def autocast(config: FitConfig, device: torch.device):
    """The context a training forward pass runs in: autocast to bfloat16 or
    float16 under ``bf16``/``fp16``, else nothing."""
    if config.bf16 or config.fp16:
        return torch.autocast(device.type, dtype=torch.bfloat16 if config.bf16 else torch.float16)
    return contextlib.nullcontext()


class Stepper:
    """An optimizer over ``params`` with its schedule over ``steps_per_epoch`` ×
    ``config.epochs`` steps, clipping and (fp16) gradient scaling.

    ``backward(loss)`` then ``step()`` make one update; ``lr`` is the rate the
    next step uses.
    """

    def __init__(self, params: Iterable[nn.Parameter], config: FitConfig, steps_per_epoch: int,
                 decayed: Set[int], device: torch.device):
        self.params = list(params)
        self.config = config
        self.total = config.epochs * steps_per_epoch
        self.steps = 0  # optimizer steps taken so far in the run
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.params, lr=config.lr, momentum=0.9)
        elif config.optimizer == "adam":
            # fused: one kernel for all parameters instead of a loop of small ops
            # (a MiniLM layer's Adam step: 7.2 ms → 1.2 ms on one CPU thread).
            self.optimizer = torch.optim.Adam(self.params, lr=config.lr, fused=True)
        else:
            groups = [{"params": [p for p in self.params if id(p) in decayed], "weight_decay": config.weight_decay},
                      {"params": [p for p in self.params if id(p) not in decayed], "weight_decay": 0.0}]
            self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, fused=True)
        self.scaler = torch.amp.GradScaler(device.type) if config.fp16 else None

    @property
    def lr(self) -> float:
        return self.config.lr * schedule_factor(self.steps, self.total, self.config)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self) -> None:
        """One update from the gradients in the parameters' ``.grad``
        (parameters whose ``.grad`` is None are left as they are)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.steps += 1

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "steps": self.steps,
                **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {})}

    def load_state_dict(self, state: dict) -> None:
        """Restore the optimizer's moments, the step count and the scaler; the
        base learning rate stays this call's ``config.lr`` (a resume may lower it)."""
        if "optimizer" not in state:  # a checkpoint written before Steppers: the optimizer's state alone
            state = {"optimizer": state, "steps": 0}
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
