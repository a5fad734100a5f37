"""Rows with named columns, as a 🤗 ``datasets.Dataset`` holds them, seen as the
``(x, y)`` items avil trains on (``Task(..., label_column="label")``).

A row ``{"input_ids": [...], "attention_mask": [...], "label": 1}`` becomes
``x = {"input_ids": ..., "attention_mask": ...}`` (the rest of the row, as a
Hugging Face model takes it) and ``y = tensor(1)``. A batch's ``x`` rows are
collated by the task's ``collate_fn`` (any HF data collator, e.g.
``DataCollatorWithPadding``: it never sees the label), or, without one, stacked
column by column, which needs rows of equal shapes.
"""
from collections.abc import Mapping
from typing import Callable, Optional

import torch
from torch.utils.data import Dataset


class RowError(ValueError):
    """A row that cannot be read as (x, y); the message names the task, the split, the row and the fix."""


class LabelledRows(Dataset):
    """``rows`` (a dataset whose items are dicts) as ``(x, y)`` items: ``y`` the
    ``label_column`` as a tensor, ``x`` a dict of the other columns.
    ``where`` ("Task 'name': the train split") names it in errors."""

    def __init__(self, rows, label_column: str, where: str):
        self.rows = rows
        self.label_column = label_column
        self.where = where
        columns = getattr(rows, "column_names", None)  # a datasets.Dataset knows its columns
        if columns is not None and label_column not in columns:
            raise ValueError(f"{where} has no label column {label_column!r} (its columns: {list(columns)}). Fix: "
                             f"pass Task(label_column=...) naming the column that holds the labels.")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        return self.pair(self.rows[int(index)], index)

    def __getitems__(self, indices) -> list:
        """Items for ``indices`` from one batched read where the rows allow it
        (torch's batched-fetch protocol, which ``datasets.Dataset`` implements)."""
        indices = [int(i) for i in indices]
        getitems = getattr(self.rows, "__getitems__", None)
        rows = getitems(indices) if getitems is not None else [self.rows[i] for i in indices]
        return [self.pair(row, i) for row, i in zip(rows, indices)]

    def pair(self, row, index):
        if not isinstance(row, Mapping):
            raise RowError(f"{self.where}'s row {index} is a {type(row).__name__}, not a dict of columns, so "
                             f"Task(label_column={self.label_column!r}) cannot read it. Fix: pass a dataset of "
                             "dict rows (a datasets.Dataset), or drop label_column for (x, y) items.")
        if self.label_column not in row:
            raise RowError(f"{self.where}'s row {index} has no column {self.label_column!r} (its columns: "
                             f"{list(row)}). Fix: pass Task(label_column=...) naming the label column.")
        label = row[self.label_column]
        try:
            y = torch.as_tensor(label)
        except (TypeError, ValueError, RuntimeError) as err:
            raise RowError(f"{self.where}'s label column {self.label_column!r} holds {label!r} in row {index}, "
                             f"not a number ({err}). Fix: map the labels to class ids, e.g. "
                             f"dataset.class_encode_column({self.label_column!r}).") from err
        return {k: v for k, v in row.items() if k != self.label_column}, y


class RowCollator:
    """``collate_fn`` of ``LabelledRows`` items: ``(x, y)`` with x the rows
    collated by ``collate_fn`` (a plain dict even where it returns a
    ``BatchEncoding``) or stacked column by column, and y (B, ...)."""

    def __init__(self, collate_fn: Optional[Callable] = None):
        self.collate_fn = collate_fn

    def __call__(self, items):
        xs, ys = zip(*items)
        x = self.collate_fn(list(xs)) if self.collate_fn is not None else stack_rows(xs)
        return dict(x) if isinstance(x, Mapping) else x, torch.stack(ys)


def stack_rows(rows) -> dict:
    """Dict rows of equal shapes as one dict of (B, ...) tensors."""
    batch = {}
    for column in rows[0]:
        try:
            values = [torch.as_tensor(row[column]) for row in rows]
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"column {column!r} holds {type(rows[0][column]).__name__} values, which are not "
                             f"tensors ({err}). Fix: remove it (dataset.remove_columns([{column!r}])), or "
                             "pass Task(collate_fn=...) that turns the rows into model inputs.") from err
        shapes = sorted({tuple(v.shape) for v in values})
        if len(shapes) > 1:
            raise ValueError(f"column {column!r} has rows of different shapes ({shapes[0]} and {shapes[-1]}), "
                             "so they cannot be stacked into a batch. Fix: pass a collator that pads them, e.g. "
                             "Task(collate_fn=transformers.DataCollatorWithPadding(tokenizer)).")
        batch[column] = torch.stack(values)
    return batch
