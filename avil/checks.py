"""Checks before training: everything ``avil.fit`` can verify cheaply before
the first epoch (docs/design.md §8). ``avil.trainer.build`` calls them in order:
the config (``checked_config``), the task list (``check_tasks``), then, with the
model built, every split of every task (``check_data``). Each failure raises an
error that names the task, the split or field, and the fix.
"""
import math
import warnings
from typing import List, Optional

import torch
from torch.utils.data import TensorDataset

from .config import FitConfig
from .data import batches, sample_size, to_device
from .flat import FlatParameters
from .methods import TrainingError
from .models import MultiTaskModel
from .rows import RowCollator, RowError
from .tasks import SPLITS, Task

# F.cross_entropy's default ignore_index: a label that marks "no label".
IGNORE_INDEX = -100
# What torch's mse/l1/smooth-l1 losses warn when labels and outputs broadcast.
BROADCAST_WARNING = "that is different to the input size"


def checked_config(config: Optional[FitConfig]) -> FitConfig:
    """The run's config, validated and normalised (``FitConfig.validate``
    returns a copy: the caller's object is never changed)."""
    if config is None:
        return FitConfig().validate()
    if not isinstance(config, FitConfig):
        raise TypeError(f"config is {describe(config)}, not an avil.FitConfig. "
                        "Fix: pass config=avil.FitConfig(...) (from a dict d: avil.FitConfig(**d)).")
    return config.validate()


def check_callbacks(callbacks) -> list:
    """``avil.fit``'s callbacks as a list, each with a callable ``on_epoch_end``."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks is {describe(callbacks)}, not a list. Fix: pass callbacks=[...], e.g. "
                        "[avil.callbacks.TensorBoard('runs/tb')].")
    for callback in callbacks:
        for hook, required in (("on_epoch_end", True), ("on_fit_end", False)):
            if (required or hasattr(callback, hook)) and not callable(getattr(callback, hook, None)):
                raise TypeError(f"the callback {describe(callback)} has no callable {hook}. Fix: give it a method "
                                f"{hook}({'epoch, history' if hook == 'on_epoch_end' else 'history'}).")
    return list(callbacks)


def check_tasks(tasks: List[Task], target: str) -> None:
    """Clear errors for the mistakes a new user makes first."""
    if not isinstance(tasks, (list, tuple)) or not tasks:
        raise ValueError(f"tasks is {describe(tasks)}, not a non-empty list. Fix: pass a list of avil.Task, "
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
            f"{name}'s items are {describe(item)}, not (x, y) pairs. Fix: make dataset[i] return (x, y), "
            "e.g. TensorDataset(x, y) with exactly two tensors."
        )
    model.eval()
    try:
        batch = next(batches(data, torch.arange(min(2, len(data))), 2, task.collate_fn))
    except Exception as err:  # re-raised with the task, the split and the fix named
        raise ValueError(f"{name}: its first two items cannot be made into a batch ({type(err).__name__}: "
                         f"{err}). Fix: give the task a collate_fn that batches its items.") from err
    if not _is_pair(batch):
        raise ValueError(f"{name}: a batch of its first two items is {describe(batch)}, not (x, y). Fix: make "
                         "Task.collate_fn return an (x, y) pair.")
    x, y = batch
    x, y = to_device(x, device), to_device(y, device)
    try:
        features = model.features(x)
    except Exception as err:
        raise ValueError(
            f"{name}: the encoder fails on its inputs ({describe(x)}; {type(err).__name__}: {err}). "
            "Fix: give this split inputs of the shape and dtype the encoder takes (as in the train split)."
        ) from err
    try:
        out = model.heads[task.name](features)
    except Exception as err:
        raise ValueError(
            f"Task '{task.name}': its head does not accept the encoder's features ({describe(features)}; "
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
                f"{name}: its labels ({describe(y)}) do not have the shape of the head's output "
                f"({describe(out)}), so loss_fn broadcasts them against each other (torch: {warning.message}). "
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
        # Dict rows stacked without a collator must agree in shape, column by column (avil/rows.py).
        stacked = isinstance(task.collate_fn, RowCollator) and task.collate_fn.collate_fn is None
        shapes = {}
        for i, item in enumerate(_items(task, split, data)):
            if not _is_pair(item):
                raise ValueError(f"{name}'s item {i} is {describe(item)}, not an (x, y) pair. "
                                 "Fix: make dataset[i] return (x, y) for every i.")
            if stacked:
                check_row_shapes(name, item[0], i, shapes)
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
    shapes = f"head output {describe(out)}, labels {describe(y)}; {type(err).__name__}: {err}"
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
        except RowError:
            raise
        except Exception as err:
            raise _unreadable(task, split, f"{indices[0]}..{indices[-1]}", err) from err
        yield from items


def _item(task: Task, split: str, data, index: int):
    try:
        return data[index]
    except RowError:  # names the task, the split, the row and the fix already
        raise
    except Exception as err:
        raise _unreadable(task, split, index, err) from err


def check_row_shapes(name: str, row: dict, index: int, shapes: dict) -> None:
    """A dict row's columns have the shapes of the split's first row (``shapes``
    collects them), as stacking them into a batch needs."""
    for column, value in row.items():
        shape = tuple(torch.as_tensor(value).shape) if not isinstance(value, str) else None
        first = shapes.setdefault(column, (shape, index))
        if first[0] != shape:
            raise ValueError(
                f"{name}'s column {column!r} has rows of different shapes ({first[0]} in row {first[1]}, {shape} in "
                f"row {index}), so they cannot be stacked into a batch. Fix: pass a collator that pads them, e.g. "
                "Task(collate_fn=transformers.DataCollatorWithPadding(tokenizer)).")


def _unreadable(task: Task, split: str, where, err: Exception) -> ValueError:
    return ValueError(
        f"Task '{task.name}': the {split} split's item {where} cannot be read ({type(err).__name__}: {err}), "
        f"though len() says it has {len(getattr(task, split))}. Fix: make dataset[i] return an (x, y) pair for "
        "every i below len(dataset)."
    )


def _is_pair(item) -> bool:
    return isinstance(item, (tuple, list)) and len(item) == 2


def describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    if isinstance(x, dict):
        return "a dict {" + ", ".join(f"{k!r}: {describe(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)}: (" + ", ".join(describe(v) for v in x) + ")"
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
