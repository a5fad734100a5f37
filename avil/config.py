"""FitConfig: every knob of a run, with the defaults of docs/design.md §1."""
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Dict, Optional

import torch

from .alpha_step import SOLVERS

DELTA_DTYPES = ("float32", "bfloat16", "float16")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "linear", "cosine")
WEIGHT_UPDATES = ("additive", "multiplicative", "replace", "average", "contribution")


@dataclass
class FitConfig:
    """How ``avil.fit`` trains. Knobs a method does not use are ignored by it.

    Shared by every method:
      epochs, batch_size, lr, seed: as usual (numbers, never bools).
      device: "cpu", "cuda", "cuda:1", "mps" or a torch.device; checked to
        exist on this machine, and stored as a string (JSON-able).
      optimizer: "adam" | "adamw" | "sgd" (SGD with momentum 0.9) for the model
        parameters. αVIL keeps one optimizer per task, whose state persists
        across epochs.
      weight_decay: decoupled weight decay of "adamw" (as in
        transformers.TrainingArguments); biases and normalisation layers'
        parameters are not decayed. 0 for the other optimizers.
      lr_scheduler_type: "constant" | "linear" | "cosine": the learning rate
        over the run, after ``warmup_ratio`` of it spent rising linearly from
        0. Every optimizer has its own schedule over its own steps: one per
        optimizer step, ``epochs`` × its steps per epoch in all (under αVIL,
        each task's optimizer over its task passes). History.lr records it.
      warmup_ratio: the share of the steps in warmup, in [0, 1).
      max_grad_norm: clip the gradient norm of every step to this (None: no
        clipping).
      bf16, fp16: train under autocast in bfloat16 / float16 (fp16 with a
        GradScaler). Evaluation and αVIL's α-step stay in float32.
      load_best_model_at_end: when ``fit`` returns, the encoder and heads hold
        the state of the epoch ``History.test`` reports (the best dev epoch);
        False leaves them at the last epoch. One copy of the model's state is
        kept for it (with checkpoint_dir, also on disk).
      eval_batch_size: batch size of dev/test evaluation.
      progress: tqdm bars on epochs and task passes (True | False).
      checkpoint_dir: if set, every epoch is written there atomically and
        ``avil.fit(..., resume=True)`` continues from the last one. A fresh
        run refuses a directory that holds another checkpoint unless
        ``avil.fit(..., overwrite=True)``; a path is stored as a string.

    αVIL (Algorithm 1 of arXiv 2405.07769; the α-step is avil/alpha_step.py):
      rho: fraction of each task's training set sampled for its task-specific
        update every epoch (1.0: all of it, once).
      alpha_solver: how the α-step minimises the target's dev loss at
        θ0 + Δᵀα: "lbfgs" (L-BFGS-B run to convergence) | "adam" | "sgd"
        (``alpha_steps`` steps of size ``alpha_lr``, the paper's sketch).
      alpha_min, alpha_max: the box every α stays in (None: unbounded on that
        side); with alpha_penalty, the α-step's trust region.
      alpha_radius: how far each α may move from α_init in one α-step,
        |α − α_init| ≤ alpha_radius (None: only the box).
      alpha_penalty: λ of the proximal term (λ/2)‖α − α_init‖² added to the
        dev loss (0: none).
      alpha_max_iter, alpha_tol: L-BFGS-B's iteration limit and tolerance
        (relative decrease of the objective and projected gradient).
      alpha_steps, alpha_lr: steps and step size of the "adam"/"sgd" solvers
        (alpha_steps=0: plain merge with α = α_init).
      alpha_dev_size: target dev examples the α-step sees, a fixed seeded
        sample per epoch (None: the whole dev set).
      alpha_ablation: also record, each epoch, the dev loss at the chosen α
        with each task's update dropped (History.alpha_step "loss_without";
        K extra forward passes over the α-step's dev subset).
      alpha_init: "ones" (α ← 1 each epoch, as in Algorithm 1) | "weights"
        (α ← the current task weights).
      weight_update: "additive" w ← w + (α − 1) (the paper's printed rule) |
        "multiplicative" w ← w·α | "replace" w ← α | "average" (the mean of
        α over the epochs so far) | "contribution" (the mean share of the
        per-delta ablation's dev-loss rise): avil/methods/weight_rules.py.
      pin_target_weight: the target's weight stays 1 (only auxiliaries move).
      weight_min, weight_max: every task weight is kept inside this range after
        each update and is used as the loss scale of its task pass. weight_min
        must be > 0: a scale ≤ 0 turns a task pass into loss ascent, or kills
        the task for good (its δ is 0, so α could never bring it back).
      delta_dtype: storage of Δ (K × N): "float32" | "bfloat16" | "float16"
        (half types halve the merge's memory traffic; math stays float32).

    Other methods' knobs (details in avil/methods/static.py, gcs.py and diw.py):
      static_weights: ``static``'s fixed loss weights, {auxiliary: weight ≥ 0}
        (1 where not given; 0 turns an auxiliary off).
      gcs_variant: "weighted" (an auxiliary gradient on the shared parameters
        enters with weight max(0, cos(g_target, g_aux))) | "unweighted" (with
        weight 1 if cos ≥ 0, else 0); Du et al. 2018 propose both.
      diw_bound: B, the upper clip of the importance weights (> 1, since the
        weights are normalised to mean 1 over all auxiliary examples).
      diw_ridge: λ of the ridge-regularised kernel mean matching solution
        (K/n + λI) β = κ̄ (the kernel matrix scaled by 1/n, so λ is scale-free:
        large λ gives β ∝ a kernel density estimate of the dev features).
      diw_max_aux: auxiliary examples (pooled over all auxiliary tasks,
        sampled afresh each epoch) the kernel is fitted on; every other
        example gets its weight from the kernel expansion (bounds memory and
        time to O(diw_max_aux²) whatever the data size).
      diw_max_dev: target dev examples the weights match (sampled each epoch).
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_scheduler_type: str = "constant"
    warmup_ratio: float = 0.0
    max_grad_norm: Optional[float] = None
    bf16: bool = False
    fp16: bool = False
    load_best_model_at_end: bool = True
    seed: int = 0
    device: str = "cpu"
    eval_batch_size: int = 512
    progress: bool = True
    checkpoint_dir: Optional[str] = None
    # αVIL
    rho: float = 1.0
    alpha_solver: str = "lbfgs"
    alpha_min: Optional[float] = 0.0
    alpha_max: Optional[float] = 4.0
    alpha_radius: Optional[float] = None
    alpha_penalty: float = 0.0
    alpha_max_iter: int = 30
    alpha_tol: float = 1e-5
    alpha_steps: int = 10
    alpha_lr: float = 0.05
    alpha_dev_size: Optional[int] = 256
    alpha_ablation: bool = False
    alpha_init: str = "ones"
    weight_update: str = "additive"
    pin_target_weight: bool = False
    weight_min: float = 0.05
    weight_max: float = 4.0
    delta_dtype: str = "float32"
    # Other methods
    static_weights: Optional[Dict[str, float]] = None
    gcs_variant: str = "weighted"
    diw_bound: float = 5.0
    diw_ridge: float = 0.1
    diw_max_aux: int = 1000
    diw_max_dev: int = 1000

    def validate(self) -> "FitConfig":
        """A normalised copy of this config (device and checkpoint_dir as
        strings), after checking every field: raises ValueError naming the
        field and the fix for any invalid value. ``self`` is left unchanged."""
        def bad(name, rule, example):
            value = getattr(self, name)
            raise ValueError(
                f"FitConfig.{name} = {value!r}: {rule}. Fix: pass e.g. FitConfig({name}={example!r})."
            )

        positive_ints = {"epochs": 10, "batch_size": 32, "eval_batch_size": 512, "alpha_max_iter": 30,
                         "diw_max_aux": 1000, "diw_max_dev": 1000}
        for name, example in positive_ints.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(name, "must be an integer ≥ 1", example)
        if not isinstance(self.alpha_steps, int) or isinstance(self.alpha_steps, bool) or self.alpha_steps < 0:
            bad("alpha_steps", "must be an integer ≥ 0", 10)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2 ** 32:
            bad("seed", "must be an integer in [0, 2**32)", 0)
        for name, example in (("lr", 1e-3), ("alpha_lr", 0.05), ("alpha_tol", 1e-5), ("diw_ridge", 0.1)):
            value = getattr(self, name)
            if not _is_number(value) or not value > 0 or value == float("inf"):
                bad(name, "must be a finite number > 0", example)
        for name in ("progress", "alpha_ablation", "bf16", "fp16", "load_best_model_at_end", "pin_target_weight"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "must be True or False", False)
        device = check_device(self.device)
        if self.checkpoint_dir is not None:
            if not isinstance(self.checkpoint_dir, (str, os.PathLike)) or not str(self.checkpoint_dir):
                bad("checkpoint_dir", "must be a directory path (str or pathlib.Path) or None", "runs/ckpt")
        if not _is_number(self.rho) or not 0 < self.rho <= 1:
            bad("rho", "must lie in (0, 1]", 1.0)
        choices = {
            "optimizer": OPTIMIZERS,
            "lr_scheduler_type": SCHEDULES,
            "alpha_solver": SOLVERS,
            "alpha_init": ("ones", "weights"),
            "weight_update": WEIGHT_UPDATES,
            "delta_dtype": DELTA_DTYPES,
            "gcs_variant": ("weighted", "unweighted"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                bad(name, f"must be one of {allowed}", allowed[0])
        if not _is_number(self.weight_decay) or not 0 <= self.weight_decay < math.inf:
            bad("weight_decay", "must be a finite number ≥ 0", 0.01)
        if self.weight_decay and self.optimizer != "adamw":
            raise ValueError(f"FitConfig.weight_decay = {self.weight_decay!r} with optimizer={self.optimizer!r}: "
                             "weight decay is applied AdamW-style (decoupled from the gradient). Fix: pass "
                             "FitConfig(optimizer='adamw', weight_decay=...), or weight_decay=0.")
        if not _is_number(self.warmup_ratio) or not 0 <= self.warmup_ratio < 1:
            bad("warmup_ratio", "must be a number in [0, 1)", 0.1)
        if self.max_grad_norm is not None and (not _is_number(self.max_grad_norm)
                                               or not 0 < self.max_grad_norm < math.inf):
            bad("max_grad_norm", "must be a finite number > 0, or None for no clipping", 1.0)
        if self.bf16 and self.fp16:
            raise ValueError("FitConfig.bf16 = True and FitConfig.fp16 = True: autocast takes one half type. "
                             "Fix: pass only one of them (bf16 where the hardware has it).")
        if self.alpha_dev_size is not None and (
                not isinstance(self.alpha_dev_size, int) or isinstance(self.alpha_dev_size, bool)
                or self.alpha_dev_size < 1):
            bad("alpha_dev_size", "must be an integer ≥ 1, or None for the whole dev set", 1024)
        for name, example in (("alpha_min", 0.0), ("alpha_max", 4.0)):
            value = getattr(self, name)
            if value is not None and (not _is_number(value) or not math.isfinite(value)):
                bad(name, "must be a finite number, or None for no bound", example)
        if self.alpha_min is not None and self.alpha_max is not None and not self.alpha_min < self.alpha_max:
            bad("alpha_max", f"must be > alpha_min ({self.alpha_min})", self.alpha_min + 4.0)
        if self.alpha_radius is not None and (not _is_number(self.alpha_radius)
                                              or not 0 < self.alpha_radius < math.inf):
            bad("alpha_radius", "must be a finite number > 0, or None for no radius", 0.5)
        if not _is_number(self.alpha_penalty) or not 0 <= self.alpha_penalty < math.inf:
            bad("alpha_penalty", "must be a finite number ≥ 0", 0.0)
        if not _is_number(self.weight_min) or not 0 < self.weight_min < math.inf:
            bad("weight_min", "must be a finite number > 0 (a loss scale ≤ 0 is loss ascent or "
                              "the task's death)", 0.05)
        if not _is_number(self.weight_max) or not self.weight_min < self.weight_max < math.inf:
            bad("weight_max", f"must be a finite number > weight_min ({self.weight_min})", 4.0)
        if self.static_weights is not None and (
                not isinstance(self.static_weights, dict)
                or not all(isinstance(k, str) and _is_number(v) and 0 <= v < math.inf
                           for k, v in self.static_weights.items())):
            bad("static_weights", "must be a dict {auxiliary name: finite weight ≥ 0}, or None", {"aux": 0.5})
        if not _is_number(self.diw_bound) or not 1 < self.diw_bound < float("inf"):
            bad("diw_bound", "must be a finite number > 1 (the weights have mean 1)", 5.0)
        checkpoint_dir = None if self.checkpoint_dir is None else os.fspath(self.checkpoint_dir)
        return replace(self, device=device, checkpoint_dir=checkpoint_dir)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def check_device(device) -> str:
    """``device`` as a string, after checking that this machine has it."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"FitConfig.device = {device!r} is not a device ({err}). "
                         "Fix: pass e.g. FitConfig(device='cpu') or FitConfig(device='cuda').") from err
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"FitConfig.device = {device!r}: this machine has no CUDA device "
                             "(torch.cuda.is_available() is False). Fix: pass FitConfig(device='cpu').")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"FitConfig.device = {device!r}: this machine has {count} CUDA device(s), "
                             f"numbered 0..{count - 1}. Fix: pass e.g. FitConfig(device='cuda:0').")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"FitConfig.device = {device!r}: MPS is not available on this machine. "
                             "Fix: pass FitConfig(device='cpu').")
    elif parsed.type != "cpu":
        raise ValueError(f"FitConfig.device = {device!r}: avil runs on 'cpu', 'cuda' or 'mps'. "
                         "Fix: pass FitConfig(device='cpu').")
    return str(parsed)


def _is_number(value) -> bool:
    """int or float, but not bool (True would pass as 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
