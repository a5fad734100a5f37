"""The text suite as ``avil.Task``s (:func:`make_tasks`) and, for
``reproduce.compare``, built once per seed with its frozen states cached
(:class:`TextSuite`)."""
from __future__ import annotations

import copy
import dataclasses
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import Task
from ...metrics import accuracy
from .corpora import GLUE, GLUE_TASKS, RT_TASKS, glue_splits, load_glue, minilm_path, rotten_tomatoes_splits
from .encoder import TextEncoder, cache_features
from .tokenized import PadCollator, tokenize

def make_tasks(tokenizer, target: str = "sentiment", data: str = "rotten_tomatoes",
               n_train: Optional[int] = 2000, n_dev: Optional[int] = 500, n_test: Optional[int] = 1000,
               max_length: int = 64, seed: int = 0, hidden: int = 384,
               tasks: Optional[Sequence[str]] = None, data_dir=None, path=None,
               cache_dir: Optional[str] = None, n_aux_eval: Optional[int] = None) -> List[Task]:
    """The text suite as ``avil.Task``s, target first.

    tokenizer: the encoder's (e.g. ``AutoTokenizer.from_pretrained(minilm_path())``).
    data: "rotten_tomatoes" (offline; tasks default RT_TASKS, target "sentiment")
        or "glue" (tasks default GLUE_TASKS, target e.g. "rte"; from the Hub,
        or from local files under ``data_dir``, see :func:`load_glue`).
    n_train, n_dev, n_test: examples per task and split (None = all there are).
        For GLUE, dev is held out of GLUE's train split and test is GLUE's
        validation split (its test labels are hidden). subjectivity is
        balanced and plots are scarce: at most 1726/222/218 examples (seed 0).
    n_aux_eval: examples in each auxiliary's dev and test split instead of
        n_dev and n_test (None: the same as the target's). No method reads
        them (model selection and αVIL's α use the target's dev set; avil.fit
        only needs them non-empty), so a few keep tokenising and
        :func:`cache_features` cheap.
    max_length: tokens per example (pairs together) after truncation.
    hidden: the encoder's ``out_features``; heads are ``nn.Linear(hidden, n_labels)``.
    path: another Rotten Tomatoes csv (validated strictly) instead of the shipped one.
    cache_dir: the ``datasets`` cache for the files read (None: its default).
    Heads are initialised from ``seed`` without touching the global RNG.
    """
    defaults = {"rotten_tomatoes": RT_TASKS, "glue": GLUE_TASKS}
    if data not in defaults:
        raise ValueError(f"data must be one of {list(defaults)}, not {data!r}")
    names = list(tasks) if tasks is not None else list(defaults[data])
    if target not in names:
        raise ValueError(f"target {target!r} is not among the tasks {names}; pass tasks=[...] with it")
    names.remove(target)
    names.insert(0, target)  # target first

    aux_sizes = (n_train, n_dev, n_test) if n_aux_eval is None else (n_train, n_aux_eval, n_aux_eval)
    sizes = {name: (n_train, n_dev, n_test) if name == target else aux_sizes for name in names}
    if data == "rotten_tomatoes":
        raw = rotten_tomatoes_splits(names, sizes, seed, path, cache_dir)
        n_labels = {name: 2 for name in names}
    else:
        raw, n_labels = {}, {}
        for name in names:
            glue = load_glue(name, data_dir, cache_dir)
            raw[name] = glue_splits(glue, name, sizes[name], seed)
            n_labels[name] = len(GLUE[name][1])

    result = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in names:
            train, dev, test = (tokenize(ds, tokenizer, max_length) for ds in raw[name])
            result.append(Task(name=name, train=train, dev=dev, test=test,
                               head=nn.Linear(hidden, n_labels[name]), loss_fn=F.cross_entropy,
                               metric_fn=accuracy,
                               collate_fn=PadCollator(tokenizer)))
    return result


class TextSuite:
    """``make_run(seed) -> (encoder, tasks)`` for ``reproduce.compare`` on the
    text suite, with each seed's suite built (tokenised, and with
    ``trainable_layers`` its frozen states cached) once, when it is first
    asked for or by :meth:`prepare`.

    Call ``prepare(seeds)`` before ``reproduce.compare(..., workers=N)``: the
    forked workers then inherit the built suites instead of each caching
    them again. Every run gets a freshly loaded encoder and untrained copies
    of the seed's heads, so runs of a seed start from the same point.

    model: a local folder or Hub name (None: the shipped all-MiniLM-L6-v2).
    trainable_layers: k fine-tunes the top k transformer layers on cached
        states (partial fine-tuning, :func:`cache_features`); None fine-tunes
        the whole encoder on tokens.
    pooling: "mean" | "cls" (:class:`TextEncoder`).
    make_tasks_kwargs: passed to :func:`make_tasks` (sizes, data, target, ...).
    """

    def __init__(self, model=None, trainable_layers: Optional[int] = None, pooling: str = "mean",
                 **make_tasks_kwargs):
        self.model = str(model) if model is not None else str(minilm_path())
        self.trainable_layers = trainable_layers
        self.pooling = pooling
        self.make_tasks_kwargs = make_tasks_kwargs
        self.suites: Dict[int, List[Task]] = {}

    def encoder(self):
        return TextEncoder(self.model, pooling=self.pooling, trainable_layers=self.trainable_layers)

    def suite(self, seed: int) -> List[Task]:
        """The seed's tasks as built (never trained: runs take copies of the heads)."""
        if seed not in self.suites:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.model)
            tasks = make_tasks(tokenizer, seed=seed, **self.make_tasks_kwargs)
            if self.trainable_layers is not None:
                with torch.no_grad():
                    tasks = cache_features(tasks, self.encoder().eval())
            self.suites[seed] = tasks
        return self.suites[seed]

    def prepare(self, seeds: Sequence[int]) -> "TextSuite":
        for seed in seeds:
            self.suite(seed)
        return self

    def __call__(self, seed: int):
        encoder = self.encoder()
        tasks = [dataclasses.replace(t, head=copy.deepcopy(t.head)) for t in self.suite(seed)]
        return (encoder.top if self.trainable_layers is not None else encoder), tasks
