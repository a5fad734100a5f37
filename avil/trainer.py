"""``avil.fit``: validate the inputs, build the multitask model, run a method
epoch by epoch, evaluate the target, checkpoint, and return a History.

``build`` is the construction seam: it checks everything that is cheap to
check (config, method, tasks, data, checkpoint_dir) and builds the model, its
flat buffer and the method's runner, training nothing. ``fit`` and
``benchmarks/epoch_cost.py`` both start from it, so a benchmark times exactly
the objects a run trains.

What ``fit`` guarantees (docs/design.md §8):
- bad input fails before the first epoch, with an error naming the task,
  the split or field, and the fix;
- after every epoch θ (parameters and float buffers), α, the task weights and
  the target's dev/test metrics are checked finite before anything is
  recorded or checkpointed: a non-finite epoch stops the run with a
  TrainingError naming the epoch and the fix, and the last checkpoint (the
  previous epoch's) stays as it was;
- with ``FitConfig.checkpoint_dir`` the directory is locked for the run
  (``checkpoint.locked``), a fresh run never replaces another run's
  checkpoint unless ``overwrite=True``, and every epoch is checkpointed
  atomically.

Under ``torchrun`` (an initialised default process group) the same calls run
task-parallel: ``build`` asks ``avil.distributed.context()`` for the group,
and the few steps that differ (checks, the runner's class, locking, saving,
loading, evaluating once) go through it (docs/design.md §7); in one process
they go straight to the code path above.
"""
import math
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from torch import nn
from tqdm import tqdm

from . import checkpoint, distributed
from .best_model import BestModel
from .checks import check_callbacks, check_data, check_tasks, checked_config, describe
from .config import FitConfig
from .data import batches, to_device
from .flat import FlatParameters
from .history import History
from .methods import METHODS, Method, TrainingError
from .models import MultiTaskModel
from .tasks import Task

# Config fields that do not change what a run computes: not recorded in History.
NOT_RECORDED = {"progress", "checkpoint_dir"}
# Config fields a resumed run may change: train on for more epochs, go on with
# a lower lr (the fix a NaN loss suggests), evaluate in other batch sizes.
# Each change is recorded in History.resumes.
RESUMABLE_CHANGES = NOT_RECORDED | {"epochs", "lr", "eval_batch_size"}


@dataclass
class Setup:
    """What ``build`` returns: everything ``fit``'s epoch loop needs.

    model: the encoder and one head per task (``MultiTaskModel``), on ``device``.
    flat: the model's parameters and float buffers as views of one vector.
    runner: the method's instance, ``avil.METHODS[method](model, flat, tasks, target, config)``.
    tasks: the tasks, in the given order; target: the target Task.
    parallel: where it runs, ``avil.distributed.context()``: ``Local`` (one
        process) or a ``Group`` (task-parallel under torchrun), both
        ``avil.distributed.Parallel``.
    assignment: which process trains which task (``parallel.assign``).
    """

    model: MultiTaskModel
    flat: FlatParameters
    runner: Method
    tasks: List[Task]
    target: Task
    method: str
    config: FitConfig
    device: torch.device
    parallel: distributed.Parallel
    assignment: distributed.Assignment


def build(encoder: nn.Module, tasks: List[Task], target: str, method: str = "avil",
          config: Optional[FitConfig] = None) -> Setup:
    """Check the inputs, then build the model, its flat buffer and the method runner.

    In order, each failing with an error that names the task, the split or
    field, and the fix: the config (types, ranges, the device exists); the
    method name; the tasks (types, names usable as module keys, unique, the
    target among them, no empty split); under torchrun, that every rank
    calls alike and the method is task-parallel (``Group.check``);
    checkpoint_dir writable (by every rank); then, with the model built (under
    torchrun: the same on every rank, and rank 0's θ shared), every split of
    every task (``check_data``). Trains nothing and leaves the torch RNG as
    ``torch.manual_seed(config.seed)`` left it (on rank 0; ranks > 0 reseed).
    """
    config = checked_config(config)
    if method not in METHODS:
        raise ValueError(
            f"unknown method {method!r}. Fix: use one of {sorted(METHODS)} (avil.METHODS)."
        )
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"the encoder is a {type(encoder).__name__}, not an nn.Module. "
                        "Fix: pass a torch.nn.Module that maps a batch of x to features.")
    check_tasks(tasks, target)
    parallel = distributed.context()
    config = parallel.check(METHODS[method], method, tasks, target, config)
    assignment = parallel.assign(tasks, config)
    if config.checkpoint_dir:
        parallel.check_writable(config.checkpoint_dir)
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = MultiTaskModel(encoder, {t.name: t.head for t in tasks}).to(device)
    flat = FlatParameters(model)
    parallel.share(flat, config)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        check_data(model, flat, tasks, config, device)
    runner = parallel.runner_class(METHODS[method], assignment)(model, flat, tasks, target, config)
    return Setup(model=model, flat=flat, runner=runner, tasks=list(tasks),
                 target=next(t for t in tasks if t.name == target), method=method, config=config,
                 device=device, parallel=parallel, assignment=assignment)


def fit(encoder: nn.Module, tasks: List[Task], target: str, method: str = "avil",
        config: Optional[FitConfig] = None, resume: bool = False, overwrite: bool = False,
        callbacks: Sequence = ()) -> History:
    """Train ``encoder`` with one head per task by ``method``, for the target task.

    Trains the encoder and the tasks' heads *in place*, as a PyTorch training
    loop does: when ``fit`` returns they hold the state of the epoch that
    ``History.test`` reports (``FitConfig.load_best_model_at_end``, default) or
    of the last epoch. Copy them first (``copy.deepcopy``) to keep the
    untrained modules, e.g. to start several runs from one initialisation.

    Returns the History (target dev metric per epoch, test metric at the best
    dev epoch, task weights and α per epoch). ``callbacks``: objects with
    ``on_epoch_end(epoch, history)`` (epoch: epochs done, 1-based), called after
    every epoch is recorded and checkpointed, and optionally
    ``on_fit_end(history)`` (``avil.callbacks``). With ``config.checkpoint_dir``
    every epoch is checkpointed; ``resume=True`` continues from the last one
    (and starts afresh when there is none yet), and may change ``epochs``
    (upwards, and not under a learning-rate schedule or warmup), ``lr`` and
    ``eval_batch_size`` (recorded in ``History.resumes``). A fresh
    run (``resume=False``) refuses a checkpoint_dir that already holds a
    checkpoint unless ``overwrite=True``, which replaces it at the first
    epoch's save. On CPU a resumed run gives the same History as an
    uninterrupted one.
    """
    config = checked_config(config)
    callbacks = check_callbacks(callbacks)
    if resume and not config.checkpoint_dir:
        raise ValueError("resume=True needs FitConfig.checkpoint_dir (where the run was checkpointed).")
    if resume and overwrite:
        raise ValueError("resume=True continues the checkpoint in FitConfig.checkpoint_dir and overwrite=True "
                         "replaces it. Fix: pass only one of them.")
    setup = build(encoder, tasks, target, method, config)
    history = History(method=method, target=target, tasks=[t.name for t in tasks],
                      seed=config.seed, config=recorded_config(config))
    best = BestModel(keep=config.load_best_model_at_end)
    if not config.checkpoint_dir:
        return train(setup, history, best, callbacks)
    with setup.parallel.locked(config.checkpoint_dir) as directory:
        if resume:
            state = setup.parallel.load(directory, setup.assignment)
            if state is not None:
                history = restore(setup, state, history, directory)
                if config.load_best_model_at_end:
                    best.restore(setup.flat, history, directory, state.get("best"))
        elif setup.parallel.exists(directory) and not overwrite:
            raise ValueError(
                f"FitConfig.checkpoint_dir = {str(directory)!r} already holds a checkpoint "
                f"({directory / checkpoint.FILENAME}), and a fresh run (resume=False) would replace it. "
                "Fix: pass resume=True to continue that run, overwrite=True to replace it, or another "
                "checkpoint_dir."
            )
        return train(setup, history, best, callbacks, directory)


def train(setup: Setup, history: History, best: BestModel, callbacks: Sequence = (), directory=None) -> History:
    """The epoch loop: train, check, evaluate, record, checkpoint, call back;
    then, with ``load_best_model_at_end``, the best epoch's state back into the model."""
    config, runner = setup.config, setup.runner
    epochs = tqdm(range(history.epochs, config.epochs), initial=history.epochs, total=config.epochs,
                  desc=f"{setup.method} → {setup.target.name}", disable=not config.progress)
    for epoch in epochs:
        start = time.perf_counter()
        try:
            result = runner.train_epoch(epoch)
        except distributed.DistributedError:
            raise  # another rank stopped: its message says where to go on from
        except TrainingError as err:
            raise TrainingError(f"{err} {resume_advice(directory, history)}") from err
        check_state(setup, result, epoch, directory, history)
        dev, test = setup.parallel.once(
            f"evaluating the target after epoch {epoch + 1}",
            lambda: tuple(evaluate_checked(setup, split, epoch, directory, history) for split in ("dev", "test")))
        history.record(**result, dev=dev, test=test, seconds=time.perf_counter() - start)
        epochs.set_postfix(dev=f"{dev:.4f}")
        taken = best.update(setup.flat, history, directory)
        if directory is not None:
            setup.parallel.save(directory, checkpoint_state(setup, history, best), setup.assignment)
            if taken:
                best.write(directory, setup.parallel)
        for callback in callbacks:
            callback.on_epoch_end(history.epochs, history)
    if config.load_best_model_at_end:
        best.load_into(setup.flat)
    for callback in callbacks:
        if hasattr(callback, "on_fit_end"):
            callback.on_fit_end(history)
    return history


def recorded_config(config: FitConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in NOT_RECORDED}


# -- after every epoch: finite state and evaluation ---------------------------------

def resume_advice(directory, history: History) -> str:
    """Where the run can go on from, for every error that stops training."""
    if directory is None:
        return ("Nothing was checkpointed (FitConfig.checkpoint_dir is None): start again, e.g. with a "
                "lower FitConfig.lr, and set checkpoint_dir to be able to resume after such an error.")
    if history.epochs == 0:
        return "Nothing was checkpointed yet: start again, e.g. with a lower FitConfig.lr."
    return (f"The last checkpoint (epoch {history.epochs}) in {directory} is intact: continue from it with "
            "avil.fit(..., resume=True), e.g. with a lower FitConfig.lr (a changed lr is allowed on resume "
            "and recorded in History.resumes).")


def check_state(setup: Setup, result: dict, epoch: int, directory, history: History) -> None:
    """α, task weights and θ (parameters and float buffers) finite after an epoch."""
    where = f"after epoch {epoch + 1} (method '{setup.method}'). Training stopped"
    advice = resume_advice(directory, history)
    alphas = result.get("alphas") or {}
    bad = {name: a for name, a in alphas.items() if not math.isfinite(a)}
    if bad:
        raise TrainingError(
            f"α of {bad} is not finite {where}. α is tuned on the dev loss of Task "
            f"'{setup.target.name}' (its dev split): a NaN or inf there makes α non-finite. Fix: check that "
            f"split's inputs, labels and loss_fn for NaN/inf; a smaller FitConfig.alpha_lr if the dev loss "
            f"diverged. {advice}"
        )
    bad = {name: w for name, w in result["task_weights"].items() if not math.isfinite(w)}
    if bad:
        raise TrainingError(f"the task weights {bad} are not finite {where}. Fix: check the tasks' data and "
                            f"loss_fns for NaN/inf. {advice}")
    lost = setup.flat.unbound()
    if lost:
        raise TrainingError(
            f"{lost} left the model's flat buffer during epoch {epoch + 1}: a module assigned new tensors "
            "to them (e.g. self.stat = self.stat * m + x) instead of updating them in place, so αVIL's merge "
            "and the checkpoints would miss them. Fix: update parameters and buffers in place "
            "(self.stat.mul_(m).add_(x))."
        )
    data = setup.flat.data
    finite = torch.isfinite(data)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0])
        raise TrainingError(
            f"the model state became non-finite {where} before checkpointing it: {int((~finite).sum())} "
            f"values, the first in {setup.flat.name_at(first)}. Fix: a lower FitConfig.lr; check the tasks' "
            f"data and loss_fns for NaN/inf. {advice}"
        )


def evaluate_checked(setup: Setup, split: str, epoch: int, directory, history: History) -> float:
    """The target's metric on a whole split, refusing non-finite outputs or metrics."""
    task = setup.target
    outputs, labels = predict(setup.model, task, split, setup.config.eval_batch_size, setup.device)
    where = f"Task '{task.name}': after epoch {epoch + 1} (method '{setup.method}')"
    advice = resume_advice(directory, history)
    if not bool(torch.isfinite(outputs).all()):
        raise TrainingError(
            f"{where} the model's outputs on the {split} split are not finite, though the model state is. "
            f"Fix: check the {split} split's inputs for NaN/inf or extreme values. {advice}"
        )
    try:
        value = float(task.metric_fn(outputs, labels))
    except Exception as err:  # re-raised with the task, the split, the epoch and the fix named
        raise ValueError(
            f"{where} its metric_fn fails on the {split} split (outputs {describe(outputs)}, labels "
            f"{describe(labels)}; {type(err).__name__}: {err}). Fix: make Task.metric_fn(outputs, y) return "
            f"a float, higher is better (e.g. avil.metrics.accuracy). {advice}"
        ) from err
    if not math.isfinite(value):
        raise TrainingError(
            f"{where} its metric_fn returned {value} on the {split} split (its outputs are finite). "
            f"Fix: make Task.metric_fn return a finite number (higher is better). {advice}"
        )
    return value


@torch.no_grad()
def predict(model: MultiTaskModel, task: Task, split: str, batch_size: int, device):
    """The model's outputs (float32, CPU) and the labels on a whole split (eval mode)."""
    model.eval()
    data = getattr(task, split)
    outputs, labels = [], []
    for x, y in batches(data, torch.arange(len(data)), batch_size, task.collate_fn):
        outputs.append(model(to_device(x, device), task.name).float().cpu())
        labels.append(y)
    return torch.cat(outputs), torch.cat(labels)


# -- checkpoints and resume ------------------------------------------------------

def checkpoint_state(setup: Setup, history: History, best: BestModel) -> dict:
    """Everything a resumed run needs, as tensors and plain containers (and
    which best-model file belongs to it)."""
    return {
        "method_name": setup.method,
        "layout": [[name, list(shape)] for name, shape in setup.flat.layout],
        "flat": setup.flat.data.detach().cpu(),
        "other_buffers": setup.flat.other_buffers_state(),
        "method": setup.runner.state_dict(),
        "history": history.to_dict(),
        "rng": checkpoint.rng_state(setup.device),
        **({"best": best.record()} if best.record() is not None else {}),
    }


def restore(setup: Setup, state: dict, history: History, directory) -> History:
    """Load a checkpoint into ``setup`` and return its History, after checking
    that it belongs to this run; the config fields this call changed are
    applied and recorded in History.resumes."""
    check_resumable(state, history, setup, directory)
    flat, runner = setup.flat, setup.runner
    flat.load_(state["flat"].to(setup.device))
    flat.load_other_buffers_(state["other_buffers"])
    runner.load_state_dict(state["method"])
    saved = History.from_dict(state["history"], source=str(directory / checkpoint.FILENAME))
    now = recorded_config(setup.config)
    changed = {k: [saved.config.get(k), v] for k, v in now.items() if saved.config.get(k) != v}
    changed.update(setup.parallel.resume_changes(state))
    saved.config = now
    saved.resumes.append({"epoch": saved.epochs, "changed": changed})
    checkpoint.set_rng_state(state["rng"], setup.device)
    return saved


def check_resumable(state: dict, history: History, setup: Setup, directory) -> None:
    saved = state["history"]
    where = f"the checkpoint in FitConfig.checkpoint_dir = {str(directory)!r}"
    mismatch = [
        f"{key}: checkpoint has {saved[key]!r}, this call {getattr(history, key)!r}"
        for key in ("method", "target", "tasks", "seed") if saved[key] != getattr(history, key)
    ]
    current = setup.config.to_dict()
    mismatch += [
        f"FitConfig.{key}: checkpoint has {value!r}, this call {current.get(key)!r}"
        for key, value in saved["config"].items()
        if key not in RESUMABLE_CHANGES and current.get(key) != value
    ]
    if mismatch:
        raise ValueError(
            f"cannot resume: {where} belongs to another run (" + "; ".join(mismatch)
            + "). Fix: use a fresh checkpoint_dir, or resume=False with overwrite=True to replace it."
        )
    layout = [(name, tuple(shape)) for name, shape in state["layout"]]
    if layout != setup.flat.layout:
        differences = [f"checkpoint has {a[0]} {a[1]}, this model {b[0]} {b[1]}"
                       for a, b in zip(layout, setup.flat.layout) if a != b]
        first = differences[0] if differences else "one has more tensors than the other"
        raise ValueError(
            f"cannot resume: {where} was written for another model ({len(layout)} parameter and buffer "
            f"tensors, this model {len(setup.flat.layout)}; first difference: {first}). Fix: build the "
            "encoder and heads exactly as in the checkpointed run, or start afresh with overwrite=True "
            "or another checkpoint_dir."
        )
    done = len(saved["dev"])
    if done > setup.config.epochs:
        raise ValueError(
            f"cannot resume: {where} has already trained {done} epochs, more than FitConfig.epochs = "
            f"{setup.config.epochs}. Fix: pass epochs ≥ {done} (epochs = {done} returns the saved run), or "
            "another checkpoint_dir."
        )
    cfg, epochs = setup.config, saved["config"].get("epochs")
    if epochs != cfg.epochs and (cfg.lr_scheduler_type != "constant" or cfg.warmup_ratio > 0):
        raise ValueError(
            f"cannot resume: {where} ran a {cfg.lr_scheduler_type!r} schedule with warmup_ratio {cfg.warmup_ratio} "
            f"over {epochs} epochs, and this call asks for {cfg.epochs}: the schedule's length is part of the "
            f"run. Fix: resume with epochs={epochs}, or start afresh (overwrite=True).")
