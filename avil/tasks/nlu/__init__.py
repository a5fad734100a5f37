"""Text tasks for αVIL: an offline suite from the Rotten Tomatoes corpus and,
on machines with network access (or local files), GLUE; and the text encoder
with partial fine-tuning.

Every split is a :class:`TokenizedDataset`: a ``datasets.Dataset`` tokenised
with the encoder's tokenizer (single sentences or sentence pairs, truncated to
``max_length``), seen by avil as items ``(x, y)`` with ``x`` a dict of 1-D
token tensors (unpadded) and ``y`` a scalar label. :class:`PadCollator` pads a
batch to its longest item (dynamic padding), so ``Task.collate_fn`` gives
``(dict of (B, L) tensors, labels (B,))``.

Partial fine-tuning: :func:`cache_features` runs the frozen lower layers of a
``TextEncoder(..., trainable_layers=k)`` once over every split and returns
the same tasks with :class:`CachedStates` splits, on which
``avil.fit(encoder.top, ...)`` trains only the top k layers (and every method,
αVIL's merge included, sees only those and the heads).

The modules, in the order they build on each other:

- ``corpora``: where data and weights come from (:func:`minilm_path`,
  :func:`rotten_tomatoes_path`, :data:`MODEL`), the CSV and GLUE readers and
  their validation, and the untokenised splits (the Rotten Tomatoes tasks
  split by movie: its docstring describes the suite);
- ``tokenized``: :class:`TokenizedDataset`, :func:`tokenize`,
  :class:`PadCollator`, :func:`majority_rate`;
- ``encoder``: :class:`TextEncoder`, :class:`TransformerTop`,
  :func:`run_layers`, and the frozen states cached once
  (:func:`cache_features`, :class:`CachedStates`, :func:`pad_states`);
- ``suite``: :func:`make_tasks` (the suite as ``avil.Task``s) and
  :class:`TextSuite` (each seed's suite built once, for ``reproduce.compare``).

Everything a user needs is importable from here: ``from avil.tasks import nlu``.
"""
from .corpora import (GLUE, GLUE_FOLDERS, GLUE_TASKS, MODEL, RT_CATEGORIES, RT_COLUMNS, RT_TASKS,
                      SPLIT_FRACTIONS, columns_as_lists, glue_splits, load_glue, load_rotten_tomatoes,
                      minilm_path, rotten_tomatoes_path, rotten_tomatoes_splits, split_movies)
from .encoder import (CachedStates, TextEncoder, TransformerTop, cache_features, cache_states,
                      check_bert_layers, pad_states, pool, run_layers)
from .suite import TextSuite, make_tasks
from .tokenized import PadCollator, TokenizedDataset, majority_rate, tokenize

__all__ = ["GLUE", "GLUE_FOLDERS", "GLUE_TASKS", "MODEL", "RT_CATEGORIES", "RT_COLUMNS", "RT_TASKS",
           "SPLIT_FRACTIONS", "CachedStates", "PadCollator", "TextEncoder", "TextSuite", "TokenizedDataset",
           "TransformerTop", "cache_features", "cache_states", "check_bert_layers", "columns_as_lists",
           "glue_splits", "load_glue", "load_rotten_tomatoes", "majority_rate", "make_tasks", "minilm_path",
           "pad_states", "pool", "rotten_tomatoes_path", "rotten_tomatoes_splits", "run_layers",
           "split_movies", "tokenize"]
