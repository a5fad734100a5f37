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
import warnings
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm import tqdm

from . import checkpoint, distributed
from .config import FitConfig
from .data import batches, sample_size, to_device
from .flat import FlatParameters
from .history import History
from .methods import METHODS, Method, TrainingError
from .models import MultiTaskModel
from .tasks import SPLITS, Task

# Config fields that do not change what a run computes: not recorded in History.
NOT_RECORDED = {"progress", "checkpoint_dir"}
# Config fields a resumed run may change: train on for more epochs, go on with
# a lower lr (the fix a NaN loss suggests), evaluate in other batch sizes.
# Each change is recorded in History.resumes.
RESUMABLE_CHANGES = NOT_RECORDED | {"epochs", "lr", "eval_batch_size"}
# F.cross_entropy's default ignore_index: a label that marks "no label".
IGNORE_INDEX = -100
# What torch's mse/l1/smooth-l1 losses warn when labels and outputs broadcast.
BROADCAST_WARNING = "that is different to the input size"


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
        config: Optional[FitConfig] = None, resume: bool = False, overwrite: bool = False) -> History:
    """Train ``encoder`` with one head per task by ``method``, for the target task.

    Returns the History (target dev metric per epoch, test metric at the best
    dev epoch, task weights and α per epoch). With ``config.checkpoint_dir``
    every epoch is checkpointed; ``resume=True`` continues from the last one
    (and starts afresh when there is none yet), and may change ``epochs``,
    ``lr`` and ``eval_batch_size`` (recorded in ``History.resumes``). A fresh
    run (``resume=False``) refuses a checkpoint_dir that already holds a
    checkpoint unless ``overwrite=True``, which replaces it at the first
    epoch's save. On CPU a resumed run gives the same History as an
    uninterrupted one.
    """
    config = checked_config(config)
    if resume and not config.checkpoint_dir:
        raise ValueError("resume=True needs FitConfig.checkpoint_dir (where the run was checkpointed).")
    if resume and overwrite:
        raise ValueError("resume=True continues the checkpoint in FitConfig.checkpoint_dir and overwrite=True "
                         "replaces it. Fix: pass only one of them.")
    setup = build(encoder, tasks, target, method, config)
    history = History(method=method, target=target, tasks=[t.name for t in tasks],
                      seed=config.seed, config=recorded_config(config))
    if not config.checkpoint_dir:
        return train(setup, history)
    with setup.parallel.locked(config.checkpoint_dir) as directory:
        if resume:
            state = setup.parallel.load(directory, setup.assignment)
            if state is not None:
                history = restore(setup, state, history, directory)
        elif setup.parallel.exists(directory) and not overwrite:
            raise ValueError(
                f"FitConfig.checkpoint_dir = {str(directory)!r} already holds a checkpoint "
                f"({directory / checkpoint.FILENAME}), and a fresh run (resume=False) would replace it. "
                "Fix: pass resume=True to continue that run, overwrite=True to replace it, or another "
                "checkpoint_dir."
            )
        return train(setup, history, directory)


def train(setup: Setup, history: History, directory=None) -> History:
    """The epoch loop: train, check, evaluate, record, checkpoint."""
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
        if directory is not None:
            setup.parallel.save(directory, checkpoint_state(setup, history), setup.assignment)
    return history


def checked_config(config: Optional[FitConfig]) -> FitConfig:
    if config is None:
        return FitConfig().validate()
    if not isinstance(config, FitConfig):
        raise TypeError(f"config is {_describe(config)}, not an avil.FitConfig. "
                        "Fix: pass config=avil.FitConfig(...) (from a dict d: avil.FitConfig(**d)).")
    return config.validate()


def recorded_config(config: FitConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in NOT_RECORDED}


# -- checkpoints -----------------------------------------------------------------

def checkpoint_state(setup: Setup, history: History) -> dict:
    """Everything a resumed run needs, as tensors and plain containers."""
    return {
        "method_name": setup.method,
        "layout": [[name, list(shape)] for name, shape in setup.flat.layout],
        "flat": setup.flat.data.detach().cpu(),
        "other_buffers": setup.flat.other_buffers_state(),
        "method": setup.runner.state_dict(),
        "history": history.to_dict(),
        "rng": checkpoint.rng_state(setup.device),
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


# -- finite state ------------------------------------------------------------------

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
            f"{where} its metric_fn fails on the {split} split (outputs {_describe(outputs)}, labels "
            f"{_describe(labels)}; {type(err).__name__}: {err}). Fix: make Task.metric_fn(outputs, y) return "
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


# -- checks before training ------------------------------------------------------------

def check_tasks(tasks: List[Task], target: str) -> None:
    """Clear errors for the mistakes a new user makes first."""
    if not isinstance(tasks, (list, tuple)) or not tasks:
        raise ValueError(f"tasks is {_describe(tasks)}, not a non-empty list. Fix: pass a list of avil.Task, "
                         "one of them the target.")
    for t in tasks:
        if not isinstance(t, Task):
            raise TypeError(f"tasks must be avil.Task objects, got {type(t).__name__}.")
        t.check()
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate task names {duplicates}. Fix: give every avil.Task a unique name.")
    if isinstance(target, Task):
        raise TypeError(f"target is the Task '{target.name}' itself. Fix: pass its name, target={target.name!r}.")
    if target not in names:
        raise ValueError(f"target {target!r} is not among the tasks {names}. Fix: pass target=one of them.")
    for t in tasks:
        for split in SPLITS:
            if len(getattr(t, split)) == 0:
                raise ValueError(
                    f"Task '{t.name}': the {split} split is empty. Fix: give Task(name={t.name!r}, "
                    f"{split}=...) a dataset with at least one (x, y) example."
                )


def check_data(model: MultiTaskModel, flat: FlatParameters, tasks: List[Task], config: FitConfig,
               device) -> None:
    """Every split of every task, before training (``check_split``), then the
    final training batch of 1 that BatchNorm cannot train on."""
    for t in tasks:
        for split in SPLITS:
            check_split(model, t, split, device)
    for t in tasks:
        check_batch_of_one(model, flat, t, config, device)


@torch.no_grad()
def check_split(model: MultiTaskModel, task: Task, split: str, device) -> None:
    """One split, before training: its items are (x, y) pairs; its first two
    examples go through encoder, head and loss_fn, each failure named for
    what failed (inputs, head, label dtype, label range); every example's
    labels and inputs are checked: class indices within the head's outputs,
    no NaN or inf. (metric_fn is not probed: a metric may need more than two
    examples; a non-finite metric stops the run after the first epoch.)

    Cost: a TensorDataset is checked with a few vectorised passes over its
    tensors; any other dataset is read once, in chunks through
    ``__getitems__`` (torch's batched-fetch protocol) where the dataset has
    it, else item by item: no forward pass, about as long as one epoch's
    data loading (the shipped text suite, read item by item: 11 s for its
    12,666 items on one CPU thread).
    """
    data = getattr(task, split)
    name = f"Task '{task.name}': the {split} split"
    item = tuple(data.tensors) if isinstance(data, TensorDataset) else _item(task, split, data, 0)
    if not _is_pair(item):
        raise ValueError(
            f"{name}'s items are {_describe(item)}, not (x, y) pairs. Fix: make dataset[i] return (x, y), "
            "e.g. TensorDataset(x, y) with exactly two tensors."
        )
    model.eval()
    try:
        batch = next(batches(data, torch.arange(min(2, len(data))), 2, task.collate_fn))
    except Exception as err:  # re-raised with the task, the split and the fix named
        raise ValueError(f"{name}: its first two items cannot be made into a batch ({type(err).__name__}: "
                         f"{err}). Fix: give the task a collate_fn that batches its items.") from err
    if not _is_pair(batch):
        raise ValueError(f"{name}: a batch of its first two items is {_describe(batch)}, not (x, y). Fix: make "
                         "Task.collate_fn return an (x, y) pair.")
    x, y = batch
    x, y = to_device(x, device), to_device(y, device)
    try:
        features = model.features(x)
    except Exception as err:
        raise ValueError(
            f"{name}: the encoder fails on its inputs ({_describe(x)}; {type(err).__name__}: {err}). "
            "Fix: give this split inputs of the shape and dtype the encoder takes (as in the train split)."
        ) from err
    try:
        out = model.heads[task.name](features)
    except Exception as err:
        raise ValueError(
            f"Task '{task.name}': its head does not accept the encoder's features ({_describe(features)}; "
            f"{type(err).__name__}: {err}). Fix: make Task.head take the encoder's output, e.g. "
            "nn.Linear(features, n_classes)."
        ) from err
    classes = _class_count(out, y)
    check_values(task, split, data, classes, out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loss = task.loss_fn(out, y)
        except Exception as err:
            raise ValueError(_diagnose_loss(task, split, out, y, err)) from err
    for warning in caught:
        if BROADCAST_WARNING in str(warning.message):  # torch's regression losses broadcast, then warn
            raise ValueError(
                f"{name}: its labels ({_describe(y)}) do not have the shape of the head's output "
                f"({_describe(out)}), so loss_fn broadcasts them against each other (torch: {warning.message}). "
                "Fix: give the labels the shape loss_fn compares with the output (e.g. (N,) for a head "
                "squeezed to (N,))."
            )
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ValueError(
            f"Task '{task.name}': loss_fn returned {getattr(loss, 'shape', type(loss))}, not a scalar tensor. "
            "Fix: reduce the loss to a scalar tensor (reduction='mean')."
        )
    if not math.isfinite(loss.item()):
        raise TrainingError(f"{name}: the loss of its first examples is {loss.item()}. "
                            "Fix: check its labels and loss_fn.")


def check_values(task: Task, split: str, data, classes: Optional[int], out: torch.Tensor) -> None:
    """Every example of a split: inputs and labels finite; integer labels, where
    the head outputs class scores, within 0..classes-1 (or IGNORE_INDEX)."""
    name = f"Task '{task.name}': the {split} split"
    if isinstance(data, TensorDataset):
        x, y = data.tensors
        bad_x = _first_non_finite(x)
        bad_y = _first_non_finite(y)
        bad_label = _first_outside(y, classes)
    else:
        bad_x = bad_y = bad_label = None
        for i, item in enumerate(_items(task, split, data)):
            if not _is_pair(item):
                raise ValueError(f"{name}'s item {i} is {_describe(item)}, not an (x, y) pair. "
                                 "Fix: make dataset[i] return (x, y) for every i.")
            if bad_x is None and _first_non_finite(item[0]) is not None:
                bad_x = i
            y_i = torch.as_tensor(item[1])
            if bad_y is None and _first_non_finite(y_i) is not None:
                bad_y = i
            if bad_label is None and _first_outside(y_i.reshape(-1), classes) is not None:
                bad_label = i
    for kind, index in (("inputs", bad_x), ("labels", bad_y)):
        if index is not None:
            raise ValueError(
                f"{name} holds NaN or inf in its {kind} (first at example {index}). Fix: remove those "
                "examples or replace the values: one NaN makes the loss, α and the model NaN."
            )
    if bad_label is not None:
        label = torch.as_tensor(_item(task, split, data, bad_label)[1]).reshape(-1)
        value = label[_first_outside(label, classes)]
        try:  # on the CPU: a CUDA loss would abort the process on a bad class index
            task.loss_fn(out[:1].float().cpu(), torch.full((1,) + tuple(out.shape[1:-1]), int(value)))
        except Exception as err:
            raise ValueError(
                f"{name} has a label outside 0..{classes - 1} (label {int(value)} at example {bad_label}), "
                f"but Task.head outputs {classes} classes ({type(err).__name__}: {err}). Fix: give the head "
                f"as many outputs as there are classes (e.g. nn.Linear(features, n_classes)), or fix the "
                "labels."
            ) from err


def check_batch_of_one(model: MultiTaskModel, flat: FlatParameters, task: Task, config: FitConfig,
                       device) -> None:
    """If an epoch's last training batch can hold 1 example, check that the
    model can train on one (BatchNorm in training mode cannot). The probe's
    changes to running statistics are undone."""
    n = len(task.train)
    sizes = {n % config.batch_size, sample_size(n, config.rho) % config.batch_size}
    if 1 not in sizes:
        return
    x, _ = next(batches(task.train, torch.arange(1), 1, task.collate_fn))
    saved, others = flat.data.clone(), flat.other_buffers_state()
    model.train()
    try:
        with torch.no_grad():
            model(to_device(x, device), task.name)
    except Exception as err:
        raise ValueError(
            f"Task '{task.name}': with {n} training examples and FitConfig.batch_size = {config.batch_size}, "
            f"the last training batch of an epoch holds 1 example, and the model cannot train on a batch of "
            f"one ({type(err).__name__}: {err}). Fix: pick a batch_size that leaves no batch of 1 "
            f"(e.g. {config.batch_size + 1}), or add or drop one training example."
        ) from err
    finally:
        flat.load_(saved)
        flat.load_other_buffers_(others)
        model.eval()


def _diagnose_loss(task: Task, split: str, out: torch.Tensor, y, err: Exception) -> str:
    """Which of the labels' dtype, or the head's output, makes loss_fn fail."""
    shapes = f"head output {_describe(out)}, labels {_describe(y)}; {type(err).__name__}: {err}"
    if isinstance(y, torch.Tensor) and y.dim() >= 2 and y.shape[-1] == 1:
        try:
            task.loss_fn(out, y.squeeze(-1))
        except Exception:
            pass
        else:
            return (f"Task '{task.name}': the {split} split's labels have shape {tuple(y.shape[1:])} per example, "
                    f"one dimension too many for its loss_fn ({shapes}). Fix: store them with shape "
                    f"{tuple(y.shape[1:-1])} per example (y.squeeze(-1)).")
    if isinstance(y, torch.Tensor):
        for dtype, kind in ((torch.long, "integer class indices (torch.long)"),
                            (torch.float32, "floating-point targets (torch.float32)")):
            if y.dtype == dtype:
                continue
            try:
                task.loss_fn(out, y.to(dtype))
            except Exception:
                continue
            return (f"Task '{task.name}': the {split} split's labels are {y.dtype}, but its loss_fn needs "
                    f"{kind} ({shapes}). Fix: store that split's labels as {dtype}.")
    return (f"Task '{task.name}': its head's output does not fit its loss_fn on the {split} split ({shapes}). "
            "Fix: make Task.head map the encoder's features to what Task.loss_fn expects "
            "(e.g. nn.Linear(features, n_classes) for F.cross_entropy), and the labels to match.")


def _items(task: Task, split: str, data, chunk: int = 1024):
    """Every item of ``data``, in order, fetched in chunks where it can."""
    getitems = getattr(data, "__getitems__", None)
    for start in range(0, len(data), chunk):
        indices = list(range(start, min(start + chunk, len(data))))
        if getitems is None:
            yield from (_item(task, split, data, i) for i in indices)
            continue
        try:
            items = getitems(indices)
        except Exception as err:
            raise _unreadable(task, split, f"{indices[0]}..{indices[-1]}", err) from err
        yield from items


def _item(task: Task, split: str, data, index: int):
    try:
        return data[index]
    except Exception as err:
        raise _unreadable(task, split, index, err) from err


def _unreadable(task: Task, split: str, where, err: Exception) -> ValueError:
    return ValueError(
        f"Task '{task.name}': the {split} split's item {where} cannot be read ({type(err).__name__}: {err}), "
        f"though len() says it has {len(getattr(task, split))}. Fix: make dataset[i] return an (x, y) pair for "
        "every i below len(dataset)."
    )


def _is_pair(item) -> bool:
    return isinstance(item, (tuple, list)) and len(item) == 2


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    if isinstance(x, dict):
        return "a dict {" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)}: (" + ", ".join(_describe(v) for v in x) + ")"
    kind = type(x).__name__
    return f"{'an' if kind[0].lower() in 'aeiou' else 'a'} {kind}"


def _class_count(out: torch.Tensor, y) -> Optional[int]:
    """C when ``out`` (B, ..., C) holds class scores for integer labels ``y`` (B, ...); else None."""
    if (isinstance(y, torch.Tensor) and not y.is_floating_point() and y.dtype != torch.bool
            and out.dim() == y.dim() + 1 and out.shape[:-1] == y.shape and out.shape[-1] >= 2):
        return out.shape[-1]
    return None


def _first_non_finite(x) -> Optional[int]:
    """Index along dim 0 of the first example with a NaN or inf (tensor or dict of tensors)."""
    if isinstance(x, dict):
        found = [i for i in map(_first_non_finite, x.values()) if i is not None]
        return min(found) if found else None
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return None
    finite = torch.isfinite(x).reshape(len(x), -1).all(dim=1) if x.dim() else torch.isfinite(x).reshape(1)
    bad = (~finite).nonzero()
    return int(bad[0]) if len(bad) else None


def _first_outside(y: torch.Tensor, classes: Optional[int]) -> Optional[int]:
    """Index of the first label outside 0..classes-1 (IGNORE_INDEX allowed)."""
    if classes is None or y.is_floating_point() or y.dtype == torch.bool:
        return None
    flat_y = y.reshape(len(y), -1) if y.dim() else y.reshape(1, 1)
    bad = (((flat_y < 0) & (flat_y != IGNORE_INDEX)) | (flat_y >= classes)).any(dim=1).nonzero()
    return int(bad[0]) if len(bad) else None
