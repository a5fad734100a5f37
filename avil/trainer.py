"""``avil.fit``: validate the inputs, build the multitask model, run a method
epoch by epoch, evaluate the target, checkpoint, and return a History."""
import math
import time
from typing import List, Optional

import torch
from torch import nn
from tqdm import tqdm

from . import checkpoint
from .config import FitConfig
from .data import batches, to_device
from .flat import FlatParameters
from .history import History
from .methods import METHODS, TrainingError
from .models import MultiTaskModel
from .tasks import Task

# Config fields that do not change what a run computes: not recorded in History.
NOT_RECORDED = {"progress", "checkpoint_dir"}
# Config fields a resumed run may change (training on for more epochs).
RESUMABLE_CHANGES = NOT_RECORDED | {"epochs"}


def fit(encoder: nn.Module, tasks: List[Task], target: str, method: str = "avil",
        config: Optional[FitConfig] = None, resume: bool = False) -> History:
    """Train ``encoder`` with one head per task by ``method``, for the target task.

    Returns the History (target dev metric per epoch, test metric at the best
    dev epoch, task weights and α per epoch). With ``config.checkpoint_dir``
    every epoch is checkpointed; ``resume=True`` continues from the last one
    (and starts afresh when there is none yet). On CPU a resumed run gives the
    same History as an uninterrupted one.
    """
    config = (config or FitConfig()).validate()
    if method not in METHODS:
        raise ValueError(
            f"unknown method {method!r}. Fix: use one of {sorted(METHODS)} (avil.METHODS)."
        )
    check_tasks(tasks, target)
    if resume and not config.checkpoint_dir:
        raise ValueError("resume=True needs FitConfig.checkpoint_dir (where the run was checkpointed).")
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = MultiTaskModel(encoder, {t.name: t.head for t in tasks}).to(device)
    flat = FlatParameters(model)
    check_heads(model, tasks, device)
    runner = METHODS[method](model, flat, tasks, target, config)
    history = History(method=method, target=target, tasks=[t.name for t in tasks],
                      seed=config.seed, config=recorded_config(config))
    target_task = next(t for t in tasks if t.name == target)

    state = checkpoint.load(config.checkpoint_dir) if resume else None
    if state is not None:
        check_resumable(state, history, config)
        flat.load_(state["flat"].to(device))
        runner.load_state_dict(state["method"])
        history = History.from_dict(state["history"])
        history.config = recorded_config(config)
        checkpoint.set_rng_state(state["rng"], device)

    epochs = tqdm(range(history.epochs, config.epochs), initial=history.epochs, total=config.epochs,
                  desc=f"{method} → {target}", disable=not config.progress)
    for epoch in epochs:
        start = time.perf_counter()
        result = runner.train_epoch(epoch)
        dev = evaluate(model, target_task, "dev", config.eval_batch_size, device)
        test = evaluate(model, target_task, "test", config.eval_batch_size, device)
        history.record(**result, dev=dev, test=test, seconds=time.perf_counter() - start)
        epochs.set_postfix(dev=f"{dev:.4f}")
        if config.checkpoint_dir:
            checkpoint.save(config.checkpoint_dir, {
                "method_name": method,
                "flat": flat.data.detach().cpu(),
                "method": runner.state_dict(),
                "history": history.to_dict(),
                "rng": checkpoint.rng_state(device),
            })
    return history


def recorded_config(config: FitConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in NOT_RECORDED}


@torch.no_grad()
def evaluate(model: MultiTaskModel, task: Task, split: str, batch_size: int, device) -> float:
    """The task's metric on a whole split (eval mode, no gradients)."""
    model.eval()
    data = getattr(task, split)
    outputs, labels = [], []
    for x, y in batches(data, torch.arange(len(data)), batch_size, task.collate_fn):
        outputs.append(model(to_device(x, device), task.name).float().cpu())
        labels.append(y)
    return float(task.metric_fn(torch.cat(outputs), torch.cat(labels)))


def check_tasks(tasks: List[Task], target: str) -> None:
    """Clear errors for the mistakes a new user makes first."""
    if not tasks:
        raise ValueError("no tasks given. Fix: pass a list of avil.Task, one of them the target.")
    names = [t.name for t in tasks]
    for t in tasks:
        if not isinstance(t, Task):
            raise TypeError(f"tasks must be avil.Task objects, got {type(t).__name__}.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate task names {duplicates}. Fix: give every avil.Task a unique name.")
    if target not in names:
        raise ValueError(f"target {target!r} is not among the tasks {names}. Fix: pass target=one of them.")
    for t in tasks:
        for split in ("train", "dev", "test"):
            data = getattr(t, split)
            if data is None or len(data) == 0:
                raise ValueError(
                    f"Task '{t.name}': the {split} split is empty. Fix: give Task(name={t.name!r}, "
                    f"{split}=...) a dataset with at least one (x, y) example."
                )


@torch.no_grad()
def check_heads(model: MultiTaskModel, tasks: List[Task], device) -> None:
    """Run two training examples of every task through encoder, head and loss:
    a head whose output does not fit its loss fails here, named, not mid-run."""
    model.eval()
    for t in tasks:
        x, y = next(batches(t.train, torch.arange(min(2, len(t.train))), 2, t.collate_fn))
        x, y = to_device(x, device), to_device(y, device)
        try:
            out = model(x, t.name)
            loss = t.loss_fn(out, y)
        except Exception as err:  # re-raised with the task and the fix named
            raise ValueError(
                f"Task '{t.name}': its head's output does not fit its loss_fn ({type(err).__name__}: {err}). "
                "Fix: make Task.head map the encoder's features to what Task.loss_fn expects "
                "(e.g. nn.Linear(features, n_classes) for F.cross_entropy)."
            ) from err
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError(
                f"Task '{t.name}': loss_fn returned {getattr(loss, 'shape', type(loss))}, not a scalar. "
                "Fix: reduce the loss to a scalar (reduction='mean')."
            )
        if not math.isfinite(loss.item()):
            raise TrainingError(f"Task '{t.name}': the loss of its first examples is {loss.item()}. "
                                "Fix: check its labels and loss_fn.")


def check_resumable(state: dict, history: History, config: FitConfig) -> None:
    saved = state["history"]
    mismatch = [
        f"{key}: checkpoint has {saved[key]!r}, this call {getattr(history, key)!r}"
        for key in ("method", "target", "tasks", "seed") if saved[key] != getattr(history, key)
    ]
    current = config.to_dict()
    mismatch += [
        f"FitConfig.{key}: checkpoint has {value!r}, this call {current.get(key)!r}"
        for key, value in saved["config"].items()
        if key not in RESUMABLE_CHANGES and current.get(key) != value
    ]
    if mismatch:
        raise ValueError(
            "cannot resume: the checkpoint in FitConfig.checkpoint_dir belongs to another run ("
            + "; ".join(mismatch) + "). Fix: use a fresh checkpoint_dir, or resume=False."
        )
