"""Tokenised splits as avil sees them: :class:`TokenizedDataset` (items ``(x, y)``
with ``x`` a dict of unpadded 1-D token tensors), :func:`tokenize` (text
columns -> tokens, with the encoder's tokenizer), :class:`PadCollator`
(dynamic padding of a batch) and :func:`majority_rate`."""
from __future__ import annotations

import hashlib

import torch
from torch.utils.data import Dataset as TorchDataset

from .corpora import columns_as_lists


class TokenizedDataset(TorchDataset):
    """A tokenised ``datasets.Dataset`` as avil items: ``ds[i] = (x, y)`` with
    ``x = {"input_ids": (L,), "attention_mask": (L,)[, "token_type_ids": (L,)]}``
    (long tensors, unpadded; L varies) and ``y`` a long scalar. ``data`` holds
    the HF Dataset (columns above plus "label")."""

    def __init__(self, data):
        self.data = data
        self.keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in data.column_names]
        self._rows = data.with_format("torch", columns=[*self.keys, "label"])

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        row = self._rows[int(i)]
        return {k: row[k] for k in self.keys}, row["label"]

    def __getitems__(self, indices) -> list:
        """Items ``[self[i] for i in indices]`` from one batched Arrow read
        (torch's batched-fetch protocol; avil's up-front data checks use it)."""
        columns = columns_as_lists(self.data.select(list(indices)), [*self.keys, "label"])
        return [({k: torch.tensor(columns[k][j]) for k in self.keys}, torch.tensor(columns["label"][j]))
                for j in range(len(indices))]

    @property
    def labels(self) -> torch.Tensor:
        """All labels, (N,)."""
        return torch.tensor(columns_as_lists(self.data, ["label"])["label"], dtype=torch.long)


class PadCollator:
    """``collate_fn`` with dynamic padding: a list of ``(x, y)`` items ->
    ``(x, y)`` with x a dict of (B, L) long tensors, L the longest item of the
    batch (``tokenizer.pad``: pad id, attention mask 0, on the tokenizer's
    padding side), and y (B,). A class, not a closure, so DataLoader workers
    can pickle it."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, items):
        xs, ys = zip(*items)
        x = self.tokenizer.pad(list(xs), padding="longest", return_tensors="pt")
        # BatchEncoding is a UserDict, not a dict: avil moves plain dicts to the device.
        return dict(x), torch.stack(list(ys))


def tokenize(ds, tokenizer, max_length: int) -> TokenizedDataset:
    """Columns "text" [, "text_pair"], "label" -> :class:`TokenizedDataset`.
    Pairs are encoded as one sequence ([CLS] a [SEP] b [SEP] for BERT, with
    token_type_ids where the tokenizer has them) and truncated longest-first."""

    def encode(batch):
        return tokenizer(batch["text"], batch.get("text_pair"), truncation=True, max_length=max_length)

    import datasets.utils as hf_utils

    text_columns = [c for c in ds.column_names if c != "label"]
    # Given, not computed: datasets would otherwise dill-hash the tokenizer on
    # every call (~1 s each); these three determine the result.
    fingerprint = hashlib.sha256(
        f"{ds._fingerprint}|{tokenizer.name_or_path}|{len(tokenizer)}|{max_length}".encode()).hexdigest()[:16]
    # A progress bar per split would flood notebooks; restore the caller's setting after.
    was_disabled = hf_utils.are_progress_bars_disabled()
    hf_utils.disable_progress_bars()
    try:
        # keep_in_memory: nothing is written to the datasets cache for a derived split.
        tokenized = ds.map(encode, batched=True, remove_columns=text_columns, keep_in_memory=True,
                           new_fingerprint=fingerprint)
    finally:
        if not was_disabled:
            hf_utils.enable_progress_bars()
    return TokenizedDataset(tokenized)


def majority_rate(ds: TokenizedDataset) -> float:
    """Share of the most frequent label: the accuracy of always guessing it."""
    labels = ds.labels
    return float(torch.bincount(labels).max()) / len(labels) if len(labels) else float("nan")
