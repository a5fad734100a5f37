"""What every method shares: optimizers, seeded batch orders, one training step,
finite-loss checks and progress bars. A method subclasses ``Method`` and owns
its ``train_epoch``; nothing outside a method's file branches on its name."""
import itertools
from typing import Dict, Iterable, List

import torch
from tqdm import tqdm

from ..config import FitConfig
from ..data import Stream, batches, epoch_generator, num_batches, to_device
from ..flat import FlatParameters
from ..models import MultiTaskModel
from ..tasks import Task


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a loss became NaN); the last checkpoint is kept."""


class Method:
    """Base class of the training methods (``avil.METHODS``).

    ``train_epoch(epoch)`` trains one epoch and returns
    ``{"task_weights": {task: w}, "alphas": {task: α} or {}, "train_loss": {task: mean loss}}``.
    ``state_dict()`` / ``load_state_dict()`` carry everything a resumed run
    needs besides the parameters (optimizer states, task weights, ...).
    """

    name = ""

    def __init__(self, model: MultiTaskModel, flat: FlatParameters, tasks: List[Task],
                 target: str, config: FitConfig):
        self.model = model
        self.flat = flat
        self.config = config
        self.tasks: Dict[str, Task] = {t.name: t for t in tasks}
        self.names = [t.name for t in tasks]
        self.target = target
        self.device = torch.device(config.device)
        self.task_weights: Dict[str, float] = {name: 1.0 for name in self.names}
        shared = list(model.encoder.parameters())
        # The parameters task t's loss reaches: the encoder and its own head.
        self.task_params = {name: shared + list(model.heads[name].parameters()) for name in self.names}
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}

    # -- to implement -----------------------------------------------------
    def train_epoch(self, epoch: int) -> dict:
        raise NotImplementedError

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "task_weights": dict(self.task_weights),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.task_weights = dict(state["task_weights"])
        for key, opt_state in state["optimizers"].items():
            self.optimizers[key].load_state_dict(opt_state)

    # -- helpers ----------------------------------------------------------
    def make_optimizer(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        params = list(params)
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.config.lr, momentum=0.9)
        return torch.optim.Adam(params, lr=self.config.lr)

    def order(self, task: str, epoch: int, fraction: float = 1.0, cycle: int = 0) -> torch.Tensor:
        """A seeded shuffle of the task's training indices (the first ``fraction`` of it).

        Stream.TASK keyed by the task's name: the same whatever the task list's
        order. ``cycle`` n is the epoch's n-th fresh shuffle (a small set cycled)."""
        n = len(self.tasks[task].train)
        gen = epoch_generator(self.config.seed, epoch, Stream.TASK, task=task, cycle=cycle)
        perm = torch.randperm(n, generator=gen)
        return perm[: max(1, round(fraction * n))]

    def interleaved_schedule(self, epoch: int) -> List[str]:
        """Standard multitask learning's order of one epoch: each task's name once
        per training batch of its own, in a seeded random order (Stream.SCHEDULE).
        Built over the sorted names, so it does not depend on the task list's order."""
        names = sorted(self.names)
        schedule = torch.cat([
            torch.full((self.num_batches(len(self.tasks[name].train)),), i) for i, name in enumerate(names)
        ])
        gen = epoch_generator(self.config.seed, epoch, Stream.SCHEDULE)
        return [names[i] for i in schedule[torch.randperm(len(schedule), generator=gen)].tolist()]

    def cycled_batches(self, task: str, epoch: int):
        """The task's training batches without end, cycling through fresh seeded
        shuffles (cycles 0, 1, ...; cycle 0 is the task's ``order``): for a small
        target set that must fill as many steps as a larger schedule."""
        for cycle in itertools.count():
            yield from self.batches(task, self.order(task, epoch, cycle=cycle))

    def batches(self, task: str, indices: torch.Tensor, split: str = "train"):
        t = self.tasks[task]
        return batches(getattr(t, split), indices, self.config.batch_size, t.collate_fn)

    def num_batches(self, n: int) -> int:
        return num_batches(n, self.config.batch_size)

    def task_loss(self, task: str, batch) -> torch.Tensor:
        """The task's loss on one batch, with gradients bound to the flat buffer."""
        x, y = to_device(batch, self.device)
        self.flat.bind_grads(self.task_params[task])
        return self.tasks[task].loss_fn(self.model(x, task), y)

    def step(self, optimizer: torch.optim.Optimizer, task: str, batch, scale: float = 1.0) -> torch.Tensor:
        """One optimizer step on ``scale · L_task(batch)``; returns the unscaled loss (detached)."""
        self.model.train()
        loss = self.task_loss(task, batch)
        (loss * scale).backward()
        optimizer.step()
        return loss.detach()

    def loss_scale(self, task: str) -> float:
        """The task weight used as a loss scale, floored (FitConfig.weight_floor)."""
        floor = self.config.weight_floor
        w = self.task_weights[task]
        return w if floor is None else max(w, floor)

    def mean_losses(self, sums: Dict[str, torch.Tensor], counts: Dict[str, int], epoch: int) -> Dict[str, float]:
        """Per-task mean training losses; raises TrainingError on a NaN or inf."""
        means = {}
        for task, total in sums.items():
            value = (total / max(counts[task], 1)).item()
            if value != value or value in (float("inf"), float("-inf")):
                raise TrainingError(
                    f"Task '{task}': the training loss became {value} in epoch {epoch + 1} "
                    f"(method '{self.name}'). Training stopped; the last checkpoint (if any) is kept. "
                    "Fix: lower FitConfig.lr, check the task's labels and loss_fn for invalid values."
                )
            means[task] = value
        return means

    def progress(self, iterable=None, *, total: int = None, desc: str = ""):
        """An inner progress bar (a task pass), off with FitConfig(progress=False)."""
        return tqdm(iterable, total=total, desc=desc, leave=False, disable=not self.config.progress)
