"""History: what a run measured, epoch by epoch, as plain JSON-able data."""
import json
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional


@dataclass
class History:
    """The record of one ``avil.fit`` run.

    task_weights: one dict {task: weight} per epoch (the weights after the epoch).
    alphas: one dict {task: α} per epoch (αVIL only; empty for other methods).
    dev: the target's dev metric after each epoch.
    test_per_epoch: the target's test metric after each epoch.
    test: the target's test metric at the epoch with the best dev metric
        (the first such epoch on ties); best_epoch is that epoch, 1-based.
    train_loss: one dict {task: mean training loss} per epoch.
    alpha_step: one dict per epoch (αVIL only) of what the α-step did:
        loss_init / loss_final (target dev loss at α_init / at the chosen α),
        iterations, evaluations, on_bound (tasks whose α ended on a bound),
        converged (avil.alpha_step.AlphaStep); its wall time goes to
        alpha_step_seconds.
    epoch_seconds, alpha_step_seconds: wall time per epoch and of its α-step
        (not compared by ==: timings differ between otherwise identical runs).
    """

    method: str
    target: str
    tasks: List[str]
    seed: int
    config: Dict = field(default_factory=dict)
    task_weights: List[Dict[str, float]] = field(default_factory=list)
    alphas: List[Dict[str, float]] = field(default_factory=list)
    dev: List[float] = field(default_factory=list)
    test_per_epoch: List[float] = field(default_factory=list)
    train_loss: List[Dict[str, float]] = field(default_factory=list)
    alpha_step: List[Dict] = field(default_factory=list)
    test: Optional[float] = None
    best_epoch: Optional[int] = None
    epoch_seconds: List[float] = field(default_factory=list, compare=False)
    alpha_step_seconds: List[float] = field(default_factory=list, compare=False)

    def record(self, *, task_weights, alphas, train_loss, dev, test, seconds, alpha_step=None) -> None:
        """Append one epoch and update the best-dev test figure."""
        self.task_weights.append(dict(task_weights))
        if alphas:
            self.alphas.append(dict(alphas))
        if alpha_step:
            step = dict(alpha_step)
            self.alpha_step_seconds.append(float(step.pop("seconds")))
            self.alpha_step.append(step)
        self.train_loss.append(dict(train_loss))
        self.dev.append(float(dev))
        self.test_per_epoch.append(float(test))
        self.epoch_seconds.append(float(seconds))
        best = max(range(len(self.dev)), key=lambda i: (self.dev[i], -i))
        self.best_epoch = best + 1
        self.test = self.test_per_epoch[best]

    @property
    def epochs(self) -> int:
        return len(self.dev)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**d)

    def to_json(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def from_json(cls, path) -> "History":
        with open(path) as f:
            return cls.from_dict(json.load(f))
