"""Tasks: what αVIL trains on. ``avil.Task`` plus the shipped suites
(``avil.tasks.toy``, ``avil.tasks.multimnist``, ``avil.tasks.nlu``), which are
imported on demand so that ``import avil`` stays light."""
from dataclasses import dataclass, field
from typing import Callable, Optional

from torch import nn
from torch.utils.data import Dataset

from ..rows import LabelledRows, RowCollator

SPLITS = ("train", "dev", "test")


@dataclass(eq=False)
class Task:
    """One task of a multitask problem.

    name: a key of the model's ``nn.ModuleDict`` of heads: a non-empty string
        without "." that is not an attribute of ``nn.ModuleDict`` ("train",
        "keys", ...).
    train, dev, test: torch Datasets whose items are ``(x, y)``; x is a tensor
        or a dict of tensors (tokenised text).
    head: maps the shared encoder's features to this task's outputs.
    loss_fn: ``loss_fn(outputs, y) -> scalar``. Methods with per-example
        weights (``diw``) call ``loss_fn(outputs, y, reduction="none")``, as
        ``F.cross_entropy`` and ``F.mse_loss`` accept.
    metric_fn: ``metric_fn(outputs, y) -> float`` over a whole split, higher is better.
    collate_fn: builds a batch from a list of items (e.g. dynamic padding);
        None uses ``torch.utils.data.default_collate``.
    label_column: for splits whose items are dicts of columns (a 🤗
        ``datasets.Dataset``): the column holding y; x is the rest of the row,
        a dict as Hugging Face models take it, and ``collate_fn`` (any HF data
        collator, e.g. ``DataCollatorWithPadding``) collates the x rows
        (avil/rows.py). The splits and collate_fn are then held wrapped:
        ``task.train.rows`` is the dataset given, ``task.collate_fn.collate_fn``
        the collator.

    The fields are checked when a Task is made and again by ``avil.fit``
    (``check()``), which also checks the data itself before training.
    """

    name: str
    train: Dataset
    dev: Dataset
    test: Dataset
    head: nn.Module
    loss_fn: Callable
    metric_fn: Callable
    collate_fn: Optional[Callable] = field(default=None)
    label_column: Optional[str] = None

    def __post_init__(self):
        self.check()
        if self.label_column is not None:
            for split in SPLITS:
                data = getattr(self, split)
                if not isinstance(data, LabelledRows):
                    setattr(self, split, LabelledRows(data, self.label_column, f"Task '{self.name}': the {split} split"))
            if not isinstance(self.collate_fn, RowCollator):
                self.collate_fn = RowCollator(self.collate_fn)

    def check(self) -> None:
        """Raise a ValueError/TypeError naming the field and the fix for a field of the wrong kind."""
        name = self.name
        if not isinstance(name, str) or not name or "." in name or hasattr(nn.ModuleDict(), name):
            raise ValueError(
                f"Task name {name!r} cannot be used: it keys the task's head in an nn.ModuleDict, so it must "
                "be a non-empty string without '.' and not an nn.ModuleDict attribute such as 'train' or "
                f"'keys'. Fix: rename the task, e.g. {_suggest(name)!r}."
            )
        for split in SPLITS:
            data = getattr(self, split)
            if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
                raise TypeError(
                    f"Task '{name}': {split} is a {type(data).__name__}, not a dataset. Fix: pass a torch "
                    "Dataset with __len__ and __getitem__ returning (x, y), e.g. TensorDataset(x, y)."
                )
        if not isinstance(self.head, nn.Module):
            raise TypeError(f"Task '{name}': head is a {type(self.head).__name__}, not an nn.Module. "
                            "Fix: pass e.g. head=nn.Linear(features, n_classes).")
        for attr, example in (("loss_fn", "F.cross_entropy"), ("metric_fn", "avil.metrics.accuracy")):
            if not callable(getattr(self, attr)):
                raise TypeError(f"Task '{name}': {attr} is not callable. Fix: pass e.g. {attr}={example}.")
        if self.collate_fn is not None and not callable(self.collate_fn):
            raise TypeError(f"Task '{name}': collate_fn is not callable. Fix: pass a function or None.")
        if self.label_column is not None and (not isinstance(self.label_column, str) or not self.label_column):
            raise TypeError(f"Task '{name}': label_column is {self.label_column!r}, not a column name. Fix: pass "
                            "e.g. label_column='label', or None for splits of (x, y) items.")


def _suggest(name) -> str:
    text = str(name).replace(".", "_") if name else "task"
    return text if not hasattr(nn.ModuleDict(), text) else f"{text}_task"
