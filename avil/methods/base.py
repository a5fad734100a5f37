"""What every method shares: optimizers, seeded batch orders, one training step,
finite-loss checks, progress bars, and the interleaved epoch that
``single_task``, ``uniform``, ``gcs`` and ``diw`` run (docs/design.md §1). A
method subclasses ``Method`` and overrides the hooks of that epoch
(``train_slot``, ``start_epoch``, ``finish_epoch``) or, as αVIL does,
``train_epoch`` itself; nothing outside a method's file branches on its name."""
import dataclasses
import itertools
from collections.abc import Mapping
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from tqdm import tqdm

from ..config import FitConfig
from ..data import Stream, batches, epoch_generator, num_batches, sample_size, to_device
from ..flat import FlatParameters
from ..models import MultiTaskModel
from ..optim import Stepper, autocast, decayed_parameters, schedule_factor
from ..tasks import Task

# One item of a task's batch stream: (indices into its training set (B,), the collated batch).
Slot = Tuple[torch.Tensor, object]


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a loss became NaN); the last checkpoint is kept."""


@dataclasses.dataclass
class EpochResult(Mapping):
    """What one epoch of a method reports to ``avil.fit`` (and History.record).

    A read-only Mapping of its fields, those set to None left out, so
    ``history.record(**result, ...)`` takes it as it takes a dict.
    """

    task_weights: Dict[str, float]  # {task: weight} after the epoch
    train_loss: Dict[str, float]  # {task: mean unweighted training loss}, tasks trained this epoch
    # {optimizer: learning rate of its epoch's last step} ("model", or αVIL's tasks)
    lr: Dict[str, float] = dataclasses.field(default_factory=dict)
    alphas: Dict[str, float] = dataclasses.field(default_factory=dict)  # {task: α}; αVIL only
    alpha_step: Optional[dict] = None  # how αVIL's α-step went (docs/design.md §2); αVIL only

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self}

    def __getitem__(self, key: str):
        if key not in set(self):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return (f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Method:
    """Base class of the training methods (``avil.METHODS``).

    ``train_epoch(epoch)`` trains one epoch and returns an ``EpochResult``.
    The default is standard multitask learning's epoch: every task's batches
    interleaved in a seeded order (``interleaved_schedule``), one *slot* per
    training batch of each task, each slot trained by ``train_slot``.
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
        self.optimizers: Dict[str, Stepper] = {}
        self.decayed = decayed_parameters(model)  # what AdamW's weight decay applies to

    # -- the interleaved epoch and its hooks --------------------------------
    def train_epoch(self, epoch: int) -> EpochResult:
        """One epoch: ``start_epoch``, then ``train_slot`` for every slot of the
        seeded interleaved schedule, then ``finish_epoch``."""
        self.start_epoch(epoch)
        streams = {name: self.task_stream(name, epoch) for name in self.names}
        sums = {name: torch.zeros((), device=self.device) for name in self.names}
        counts = dict.fromkeys(self.names, 0)
        self.model.train()
        for slot in self.progress(self.interleaved_schedule(epoch), desc="all tasks"):
            for name, loss in self.train_slot(slot, streams).items():
                sums[name] += loss
                counts[name] += 1
        losses = self.mean_losses(sums, counts, epoch)
        self.finish_epoch()
        return EpochResult(task_weights=dict(self.task_weights), train_loss=losses, lr=self.epoch_lrs(epoch))

    def start_epoch(self, epoch: int) -> None:
        """Before an epoch's first slot (e.g. DIW re-estimates its example weights)."""

    def train_slot(self, task: str, streams: Dict[str, Iterator[Slot]]) -> Dict[str, torch.Tensor]:
        """Train on one slot of ``task`` in the schedule, drawing batches from
        ``streams`` ({task: endless (indices, batch) stream}); return the
        unweighted loss of every task trained, detached. Standard multitask
        learning: one step of the shared optimizer on ``task``'s next batch."""
        _, batch = next(streams[task])
        return {task: self.step(self.optimizers["model"], task, batch, scale=self.task_weights[task])}

    def finish_epoch(self) -> None:
        """After an epoch's last slot (e.g. record the epoch's gates as task weights)."""

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "task_weights": dict(self.task_weights),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.task_weights = dict(state["task_weights"])
        for key, opt_state in state["optimizers"].items():
            # The optimizers were built from this call's config; their saved state
            # (moments, steps, schedule position) is restored, their base learning rate stays this call's.
            self.optimizers[key].load_state_dict(opt_state)

    # -- helpers ----------------------------------------------------------
    def make_optimizer(self, params: Iterable[torch.nn.Parameter], key: str = "model") -> Stepper:
        """The optimizer (with schedule, clipping, scaler) of ``key``, over ``params``."""
        return Stepper(params, self.config, self.steps_per_epoch(key), self.decayed, self.device)

    def steps_per_epoch(self, key: str) -> int:
        """Optimizer steps per epoch of the optimizer ``key``: one per slot of the
        interleaved schedule (every task's training batches)."""
        return sum(self.num_batches(len(t.train)) for t in self.tasks.values())

    def epoch_lrs(self, epoch: int) -> Dict[str, float]:
        """{optimizer: the learning rate of its last step in ``epoch``} (0-based
        epoch), from the schedule: the same on every process of a run."""
        rates = {}
        for key in self.schedule_keys():
            per_epoch = self.steps_per_epoch(key)
            last = (epoch + 1) * per_epoch - 1
            rates[key] = self.config.lr * schedule_factor(last, self.config.epochs * per_epoch, self.config)
        return rates

    def schedule_keys(self) -> List[str]:
        """The optimizers whose learning rates History.lr records."""
        return ["model"]

    def order(self, task: str, epoch: int, fraction: float = 1.0, cycle: int = 0) -> torch.Tensor:
        """A seeded shuffle of the task's training indices (the first ``fraction`` of it).

        Stream.TASK keyed by the task's name: the same whatever the task list's
        order. ``cycle`` n is the epoch's n-th fresh shuffle (a small set cycled)."""
        n = len(self.tasks[task].train)
        gen = epoch_generator(self.config.seed, epoch, Stream.TASK, task=task, cycle=cycle)
        perm = torch.randperm(n, generator=gen)
        return perm[: sample_size(n, fraction)]

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

    def task_stream(self, task: str, epoch: int) -> Iterator[Slot]:
        """The task's training batches without end, as (indices (B,), batch),
        cycling through fresh seeded shuffles (cycles 0, 1, ...; cycle 0 is the
        task's ``order``): a small target set can fill as many steps as a
        larger schedule."""
        for cycle in itertools.count():
            order = self.order(task, epoch, cycle=cycle)
            yield from zip(order.split(self.config.batch_size), self.batches(task, order))

    def batches(self, task: str, indices: torch.Tensor, split: str = "train"):
        t = self.tasks[task]
        return batches(getattr(t, split), indices, self.config.batch_size, t.collate_fn)

    def num_batches(self, n: int) -> int:
        return num_batches(n, self.config.batch_size)

    def task_loss(self, task: str, batch) -> torch.Tensor:
        """The task's loss on one batch (under autocast with bf16/fp16), with
        gradients bound to the flat buffer."""
        x, y = to_device(batch, self.device)
        self.flat.bind_grads(self.task_params[task])
        with self.autocast():
            return self.tasks[task].loss_fn(self.model(x, task), y)

    def autocast(self):
        """The context of a training forward pass (``optim.autocast``)."""
        return autocast(self.config, self.device)

    def step(self, optimizer: Stepper, task: str, batch, scale: float = 1.0) -> torch.Tensor:
        """One optimizer step on ``scale · L_task(batch)``; returns the unscaled loss (detached)."""
        self.model.train()
        loss = self.task_loss(task, batch)
        optimizer.backward(loss * scale)
        optimizer.step()
        return loss.detach()

    def mean_losses(self, sums: Dict[str, torch.Tensor], counts: Dict[str, int], epoch: int) -> Dict[str, float]:
        """Per-task mean training losses of the tasks trained (count > 0);
        raises TrainingError on a NaN or inf."""
        means = {}
        for task, total in sums.items():
            if counts[task] == 0:  # not trained this epoch (single_task's auxiliaries)
                continue
            value = (total / counts[task]).item()
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
