"""The text encoder with partial fine-tuning: :class:`TextEncoder` (a Hugging
Face transformer as a sentence encoder, optionally with only its top k layers
trainable), :class:`TransformerTop` (those layers and the pooling, on the
frozen part's output), :func:`run_layers` (BERT-style layers on the real
tokens only), and the frozen part's output computed once per split
(:func:`cache_features`, :class:`CachedStates`, :func:`pad_states`)."""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset as TorchDataset

from .. import SPLITS, Task
from .corpora import columns_as_lists
from .tokenized import TokenizedDataset


class TextEncoder(nn.Module):
    """A Hugging Face transformer as a sentence encoder: x, a dict with
    "input_ids" (B, L), "attention_mask" (B, L) and optionally
    "token_type_ids" (B, L) -> features (B, hidden).

    model: a local folder or Hub name (loaded with ``AutoModel.from_pretrained``),
        or an already built transformers model (a ``PreTrainedModel``, e.g.
        ``AutoModel.from_config(config)``, randomly initialised, nothing
        downloaded). A built model is used as it is, not copied: the encoder
        trains its parameters, ``trainable_layers`` sets ``requires_grad=False``
        on its frozen part, and the encoder starts in training mode.
    pooling: "mean" (default) averages the last hidden states over the tokens
        whose attention mask is 1, so padding never changes an example's
        features (how all-MiniLM-L6-v2 was trained); "cls" takes the first
        token's state.
    trainable_layers: None (default) fine-tunes everything. An integer k
        (1 ≤ k ≤ the model's layers) freezes the embeddings and the lower
        layers (and the unused pooler): they get ``requires_grad=False`` and
        the embeddings and lower layers always run in eval mode
        (no dropout), so their output for a text never changes and can be
        computed once: :meth:`frozen_states` gives it, and :attr:`top` (a
        :class:`TransformerTop` sharing the top k layers' parameters) maps it
        to the same features as this encoder. Partial fine-tuning is then::

            encoder = TextEncoder(path, trainable_layers=1)
            cached = cache_features(tasks, encoder)  # x: frozen states
            avil.fit(encoder.top, cached, ...)   # trains (and merges) only the top layer

        (``avil.fit(encoder, tasks)`` on tokens also trains only the top
        layers, but recomputes the frozen ones at every step and carries
        their parameters in αVIL's flat buffer and deltas.)
    A local folder (e.g. ``minilm_path()``) never touches the Hub; a Hub name
    (``MODEL``) needs network the first time.
    """

    def __init__(self, model, pooling: str = "mean", trainable_layers: Optional[int] = None):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        # Imported here, not on import: transformers takes seconds to load, and
        # the package's readers and datasets do not need it.
        from transformers import AutoModel, PreTrainedModel
        from transformers.utils import logging as hf_logging

        if isinstance(model, PreTrainedModel):
            name = f"the given {type(model).__name__}"
            self.model = model
        elif isinstance(model, (str, os.PathLike)):
            name = str(model)
            # No loading bar: notebooks build one encoder per run, and each bar
            # would land in the saved outputs.
            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                self.model = AutoModel.from_pretrained(name)
            finally:
                if bars:
                    hf_logging.enable_progress_bar()
        else:
            raise TypeError(f"TextEncoder: model is a {type(model).__name__}; pass a local folder, a Hub "
                            "name or a transformers model (for a config: AutoModel.from_config(config))")
        self.pooling = pooling
        self.out_features = self.model.config.hidden_size
        n_layers = len(self.model.encoder.layer)
        if trainable_layers is not None and not (
                isinstance(trainable_layers, int) and 1 <= trainable_layers <= n_layers):
            raise ValueError(f"trainable_layers must be an integer from 1 to {n_layers} (the layers of "
                             f"{name}), or None to fine-tune everything; got {trainable_layers!r}")
        if trainable_layers is None:
            self.top = None
        else:
            # Registered twice (model.encoder.layer and top.layers): parameters()
            # yields each once, and top alone holds only trainable parameters.
            check_bert_layers(self.model.encoder.layer, name)
            self.top = TransformerTop(self.model.encoder.layer[n_layers - trainable_layers:],
                                      self.out_features, pooling)
            trainable = {id(p) for p in self.top.parameters()}
            for p in self.model.parameters():  # the embeddings, the lower layers, an unused pooler
                p.requires_grad_(id(p) in trainable)
        # from_pretrained returns eval mode (a built model may be in either); a
        # new module is in training mode, and the trainer's .train()/.eval()
        # then switch dropout consistently.
        self.train()

    @property
    def frozen_layers(self) -> int:
        """Transformer layers below the trainable ones (0 under full fine-tuning)."""
        return 0 if self.top is None else len(self.model.encoder.layer) - len(self.top.layers)

    def _frozen_modules(self):
        if self.top is None:
            return []
        return [self.model.embeddings, *self.model.encoder.layer[:self.frozen_layers]]

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()  # frozen means a fixed function: no dropout, whatever the mode
        return self

    @torch.no_grad()
    def frozen_states(self, x) -> Dict[str, torch.Tensor]:
        """What the frozen part makes of tokens x (as for ``forward``):
        ``{"hidden_states": (B, L, hidden), "attention_mask": (B, L)}``, the
        input of :attr:`top`. The embeddings count as frozen."""
        if self.top is None:
            raise ValueError("frozen_states needs a frozen part; build the encoder with "
                             "TextEncoder(path, trainable_layers=k)")
        inputs = {k: x[k] for k in ("input_ids", "token_type_ids") if k in x}
        states = self.model.embeddings(**inputs)  # (B, L, hidden)
        states = run_layers(self.model.encoder.layer[:self.frozen_layers], states, x["attention_mask"])
        return {"hidden_states": states, "attention_mask": x["attention_mask"]}

    def forward(self, x):
        if self.top is not None:
            return self.top(self.frozen_states(x))
        # Only the keys the tokenizer made; RoBERTa has no token_type_ids.
        inputs = {k: x[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in x}
        return pool(self.model(**inputs).last_hidden_state, x["attention_mask"], self.pooling)


class TransformerTop(nn.Module):
    """The trainable top of a :class:`TextEncoder` built with
    ``trainable_layers=k``: its top k transformer layers and the pooling, on
    the frozen part's output. x: ``{"hidden_states": (B, L, hidden),
    "attention_mask": (B, L)}`` (``TextEncoder.frozen_states``, or a batch of
    :func:`cache_features`) -> features (B, hidden)."""

    def __init__(self, layers, hidden: int, pooling: str):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.pooling = pooling
        self.out_features = hidden

    def forward(self, x):
        return run_layers(self.layers, x["hidden_states"], x["attention_mask"], self.pooling)


def run_layers(layers, states, attention_mask, pooling: Optional[str] = None):
    """BERT-style transformer layers (``model.encoder.layer[i:j]`` of a BERT or
    RoBERTa model, e.g.) on hidden states (B, L, hidden) with a padding mask
    (B, L), computed as the model's own forward computes them but on the real
    tokens only: every per-token operation (projections, feed-forward, layer
    norms) runs on the T = mask.sum() tokens packed together, and only the
    attention sees the padded (B, L) layout. A random batch of snippets is
    about half padding, so this saves about that share of the time.

    pooling None returns the states (B, L, hidden) (zeros at padding);
    "mean" or "cls" returns pooled features (B, hidden) (see :func:`pool`).
    With "cls" the last layer computes only the first token's output: the
    other tokens' outputs would be thrown away, and their keys and values are
    all the first token needs from them.
    """
    batch, length, hidden = states.shape
    if pooling == "cls" and not bool(attention_mask[:, 0].all()):
        raise ValueError("pooling='cls' reads the first token of every row, but the attention mask "
                         "marks it as padding: pad on the right (tokenizer.padding_side = 'right')")
    index = attention_mask.reshape(-1).nonzero().squeeze(1)  # (T,) real tokens in the (B·L) layout
    keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L): which keys each query may attend to
    h = states.reshape(batch * length, hidden).index_select(0, index)  # (T, hidden)
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        if last and pooling == "cls":
            firsts = torch.cat([index.new_zeros(1), attention_mask.sum(1).cumsum(0)[:-1]])  # (B,) in h
            return _bert_layer(layer, h, index, keys, queries=firsts)  # (B, hidden)
        h = _bert_layer(layer, h, index, keys)
    if pooling is None:
        return h.new_zeros(batch * length, hidden).index_copy(0, index, h).view(batch, length, hidden)
    if pooling == "cls":  # no layers: the input states' first tokens
        return states[:, 0]
    rows = index.div(length, rounding_mode="floor")  # (T,) the example of each token
    sums = h.new_zeros(batch, hidden).index_add(0, rows, h)  # (B, hidden)
    return sums / attention_mask.sum(1, keepdim=True).clamp(min=1).to(h.dtype)


def _bert_layer(layer, h, index, keys, queries=None):
    """One BERT/RoBERTa layer on packed tokens h (T, hidden); index (T,) their
    places in the padded (B·L) layout, keys (B, 1, 1, L) the attention mask.
    queries None: every token's output (T, hidden); else only those of the
    tokens h[queries] (B,), one per example, each at its example's row."""
    attention, out = layer.attention.self, layer.attention.output
    batch, length = keys.shape[0], keys.shape[-1]
    heads, size = attention.num_attention_heads, attention.attention_head_size
    weights = [attention.query, attention.key, attention.value]
    if queries is not None:
        weights = weights[1:]  # q only for the query tokens, below
    projected = F.linear(h, torch.cat([w.weight for w in weights]), torch.cat([w.bias for w in weights]))
    padded = projected.new_zeros(batch * length, projected.shape[1]).index_copy(0, index, projected)
    padded = padded.view(batch, length, len(weights), heads, size).permute(2, 0, 3, 1, 4)  # (·, B, heads, L, size)
    if queries is None:
        q, k, v = padded.unbind(0)  # (B, heads, L, size) each
        residual = h
    else:
        k, v = padded.unbind(0)
        residual = h.index_select(0, queries)  # (B, hidden)
        q = attention.query(residual).view(batch, heads, 1, size)  # (B, heads, 1, size)
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, scale=attention.scaling,
                                             dropout_p=attention.dropout.p if attention.training else 0.0)
    context = context.transpose(1, 2).reshape(batch * q.shape[2], -1)  # (B·Lq, hidden)
    if queries is None:
        context = context.index_select(0, index)  # (T, hidden)
    h = out.LayerNorm(out.dropout(out.dense(context)) + residual)
    return layer.output(layer.intermediate(h), h)  # dense, dropout, LayerNorm(· + h)


def check_bert_layers(layers, name) -> None:
    """run_layers knows BERT-style layers (BERT, RoBERTa, ...): say so early otherwise."""
    needed = ("attention.self.query", "attention.self.key", "attention.self.value",
              "attention.self.num_attention_heads", "attention.self.attention_head_size",
              "attention.self.scaling", "attention.output.dense", "intermediate", "output")
    for attr in needed:
        obj = layers[0]
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"{name}: trainable_layers needs BERT-style layers (BERT, RoBERTa); its "
                             f"layers have no '{attr}'. Use trainable_layers=None (full fine-tuning)")


def pool(states, attention_mask, pooling: str):
    """Hidden states (B, L, hidden) -> features (B, hidden): "mean" over the
    tokens whose mask is 1, or "cls", the first token's state."""
    if pooling == "cls":
        return states[:, 0]  # (B, hidden)
    mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, L, 1)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, hidden)

# --------------------------------------------------------------------------- cached frozen states

class CachedStates(TorchDataset):
    """A split as the frozen part of a ``TextEncoder(..., trainable_layers=k)``
    sees it, computed once (:func:`cache_features`): ``ds[i] = (x, y)`` with
    ``x = {"hidden_states": (L_i, hidden) float, "attention_mask": (L_i,) long}``
    (unpadded: L_i is the example's token count) and ``y`` a long scalar.

    states: every example's states one after another, (sum of L_i, hidden);
    lengths (N,) (the L_i, turned into offsets into states), labels (N,).
    """

    def __init__(self, states: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor):
        if not (len(lengths) == len(labels) and int(lengths.sum()) == len(states)):
            raise ValueError(f"CachedStates: {len(lengths)} lengths summing to {int(lengths.sum())}, "
                             f"{len(labels)} labels and {len(states)} states do not match")
        self.states = states
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).tolist()
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        i = int(i)
        states = self.states[self.offsets[i]:self.offsets[i + 1]]  # a view, (L_i, hidden)
        return {"hidden_states": states,
                "attention_mask": torch.ones(len(states), dtype=torch.long)}, self.labels[i]


def pad_states(items):
    """``collate_fn`` of :class:`CachedStates`: items -> ``(x, y)`` with
    x = {"hidden_states": (B, L, hidden), "attention_mask": (B, L)} padded
    with zeros to the batch's longest item, and y (B,)."""
    xs, ys = zip(*items)
    lengths = [len(x["attention_mask"]) for x in xs]
    hidden = xs[0]["hidden_states"]
    states = hidden.new_zeros(len(xs), max(lengths), hidden.shape[-1])  # (B, L, hidden)
    mask = torch.zeros(len(xs), max(lengths), dtype=torch.long)  # (B, L)
    for row, (x, n) in enumerate(zip(xs, lengths)):
        states[row, :n] = x["hidden_states"]
        mask[row, :n] = 1
    return {"hidden_states": states, "attention_mask": mask}, torch.stack(list(ys))


def cache_states(ds: TokenizedDataset, encoder, collate_fn, batch_size: int = 64) -> CachedStates:
    """One tokenised split through ``encoder.frozen_states`` (the embeddings and
    the frozen layers of a ``TextEncoder(..., trainable_layers=k)``), once.

    Batches group examples of similar length (sorted), so little time goes
    into padding; each example keeps only its own tokens' states. Stored on
    the CPU, in float32; the result does not depend on batch_size beyond
    float rounding.
    """
    device = next(encoder.parameters()).device
    lengths = torch.tensor([len(ids) for ids in columns_as_lists(ds.data, ["input_ids"])["input_ids"]])
    order = torch.argsort(lengths, descending=True, stable=True)
    per_example = [None] * len(ds)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size].tolist()
        x, _ = collate_fn(ds.__getitems__(chunk))
        states = encoder.frozen_states({k: v.to(device) for k, v in x.items()})["hidden_states"]
        states = states.float().cpu()  # (B, L, hidden), once per batch
        for row, i in enumerate(chunk):
            per_example[i] = states[row, :lengths[i]]  # (L_i, hidden), a view
    states = torch.cat(per_example) if per_example else torch.zeros(0, encoder.out_features)
    return CachedStates(states, lengths, ds.labels)


def cache_features(tasks: Sequence[Task], encoder, batch_size: int = 64) -> List[Task]:
    """Partial fine-tuning: the same tasks with every split replaced by its
    frozen states (:func:`cache_states`, :class:`CachedStates`, collated by
    :func:`pad_states`), for training ``encoder.top`` instead of ``encoder``::

        encoder = TextEncoder(minilm_path(), trainable_layers=1)
        cached = cache_features(make_tasks(tokenizer, ...), encoder)
        avil.fit(encoder.top, cached, target="sentiment", ...)

    ``encoder.top(batch)`` equals ``encoder(tokens)`` up to float rounding
    (tests/test_nlu.py). encoder: a TextEncoder with ``trainable_layers`` set;
    any of its instances loaded from the same weights gives the same states, so
    one cache serves every run of a seed (each run takes a fresh
    ``TextEncoder(...).top``). Heads and everything else are kept as they are.
    """
    if getattr(encoder, "top", None) is None:
        raise ValueError("cache_features needs an encoder with a frozen part: "
                         "TextEncoder(path, trainable_layers=k) (k = the layers to fine-tune)")
    result = []
    for task in tasks:
        if not all(isinstance(getattr(task, split), TokenizedDataset) for split in SPLITS):
            raise TypeError(f"Task '{task.name}': cache_features needs tokenised splits "
                            "(TokenizedDataset, as make_tasks builds them)")
        cached = {split: cache_states(getattr(task, split), encoder, task.collate_fn, batch_size)
                  for split in SPLITS}
        result.append(dataclasses.replace(task, **cached, collate_fn=pad_states))
    return result
