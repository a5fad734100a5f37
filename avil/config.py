"""FitConfig: every knob of a run, with the defaults of DESIGN §1."""
import os
from dataclasses import asdict, dataclass, fields
from typing import Optional

import torch

DELTA_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class FitConfig:
    """How ``avil.fit`` trains. Knobs a method does not use are ignored by it.

    Shared by every method:
      epochs, batch_size, lr, seed: as usual (numbers, never bools).
      device: "cpu", "cuda", "cuda:1", "mps" or a torch.device; checked to
        exist on this machine, and stored as a string (JSON-able).
      optimizer: "adam" | "sgd" (SGD with momentum 0.9) for the model parameters.
        αVIL keeps one optimizer per task, whose state persists across epochs.
      eval_batch_size: batch size of dev/test evaluation.
      progress: tqdm bars on epochs and task passes (True | False).
      checkpoint_dir: if set, every epoch is written there atomically and
        ``avil.fit(..., resume=True)`` continues from the last one. A fresh
        run refuses a directory that holds another checkpoint unless
        ``avil.fit(..., overwrite=True)``; a path is stored as a string.

    αVIL (Algorithm 1 of arXiv 2405.07769):
      rho: fraction of each task's training set sampled for its task-specific
        update every epoch (1.0: all of it, once).
      alpha_steps: gradient steps on α per epoch (0: plain merge with α = α_init).
      alpha_optimizer: "adam" (default) | "sgd". Our choice: ∇_α L = Δ·∇_θL is
        tiny, because every δ is only a few learning-rate steps long, so SGD
        with any rate that is safe across tasks leaves α at 1; Adam's step is
        about alpha_lr whatever the gradient's scale, so α moves by up to
        alpha_steps · alpha_lr per epoch (tests/test_methods.py shows it moves).
      alpha_lr: step size of the α optimizer.
      alpha_init: "ones" (α ← 1 each epoch, as in Algorithm 1) | "weights"
        (α ← the current task weights). "weights" with weight_update="replace"
        carries α over from epoch to epoch (α is the weight), which
        notebooks/01_multimnist.ipynb uses: there the additive rule ratchets
        every weight down during the first, overshooting merges.
      alpha_dev_batches: target dev batches (of batch_size) one α step sees;
        consecutive steps walk through a per-epoch shuffle of the dev set.
      weight_update: "additive" w ← w + (α − 1) (the paper's) |
        "multiplicative" w ← w·α | "replace" w ← α.
      weight_floor: task weights are used as loss scales max(w, weight_floor).
        A negative scale would turn a task pass into loss ascent, and a zero
        one kills the task for good (its δ is 0, so α gets no gradient and the
        weight can never come back). None uses the raw weight.
      delta_dtype: storage of Δ (K × N): "float32" | "bfloat16" | "float16"
        (half types halve the merge's memory traffic; math stays float32).

    Other methods' knobs (details in avil/methods/gcs.py and diw.py):
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
    seed: int = 0
    device: str = "cpu"
    eval_batch_size: int = 512
    progress: bool = True
    checkpoint_dir: Optional[str] = None
    # αVIL
    rho: float = 1.0
    alpha_steps: int = 10
    alpha_lr: float = 0.05
    alpha_optimizer: str = "adam"
    alpha_init: str = "ones"
    alpha_dev_batches: int = 1
    weight_update: str = "additive"
    weight_floor: Optional[float] = 0.05
    delta_dtype: str = "float32"
    # Other methods
    gcs_variant: str = "weighted"
    diw_bound: float = 5.0
    diw_ridge: float = 0.1
    diw_max_aux: int = 1000
    diw_max_dev: int = 1000

    def validate(self) -> "FitConfig":
        """Raise ValueError naming the field and the fix for any invalid value."""
        def bad(name, rule, example):
            value = getattr(self, name)
            raise ValueError(
                f"FitConfig.{name} = {value!r}: {rule}. Fix: pass e.g. FitConfig({name}={example!r})."
            )

        positive_ints = {"epochs": 10, "batch_size": 32, "eval_batch_size": 512, "alpha_dev_batches": 1,
                         "diw_max_aux": 1000, "diw_max_dev": 1000}
        for name, example in positive_ints.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(name, "must be an integer ≥ 1", example)
        if not isinstance(self.alpha_steps, int) or self.alpha_steps < 0:
            bad("alpha_steps", "must be an integer ≥ 0", 10)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2 ** 32:
            bad("seed", "must be an integer in [0, 2**32)", 0)
        for name, example in (("lr", 1e-3), ("alpha_lr", 0.05), ("diw_ridge", 0.1)):
            value = getattr(self, name)
            if (not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0
                    or value == float("inf")):
                bad(name, "must be a finite number > 0", example)
        if not isinstance(self.progress, bool):
            bad("progress", "must be True or False", False)
        self.device = check_device(self.device)
        if self.checkpoint_dir is not None:
            if not isinstance(self.checkpoint_dir, (str, os.PathLike)) or not str(self.checkpoint_dir):
                bad("checkpoint_dir", "must be a directory path (str or pathlib.Path) or None", "runs/ckpt")
            self.checkpoint_dir = os.fspath(self.checkpoint_dir)
        if not isinstance(self.rho, (int, float)) or not 0 < self.rho <= 1:
            bad("rho", "must lie in (0, 1]", 1.0)
        choices = {
            "optimizer": ("adam", "sgd"),
            "alpha_optimizer": ("adam", "sgd"),
            "alpha_init": ("ones", "weights"),
            "weight_update": ("additive", "multiplicative", "replace"),
            "delta_dtype": DELTA_DTYPES,
            "gcs_variant": ("weighted", "unweighted"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                bad(name, f"must be one of {allowed}", allowed[0])
        if self.weight_floor is not None and (
            not isinstance(self.weight_floor, (int, float)) or not self.weight_floor >= 0
        ):
            bad("weight_floor", "must be a number ≥ 0, or None to disable the floor", 0.05)
        if (not isinstance(self.diw_bound, (int, float)) or isinstance(self.diw_bound, bool)
                or not 1 < self.diw_bound < float("inf")):
            bad("diw_bound", "must be a finite number > 1 (the weights have mean 1)", 5.0)
        return self

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
