"""Batching without DataLoader workers: orders come from seeded generators, so
a run (and a resumed run) sees exactly the same batches (docs/design.md §5).

Every random order a method draws comes from a named ``Stream``; a task's
shuffles are keyed by the task's *name*, so reordering the task list changes
no task's batches, and adding a stream or a task renumbers nothing.
"""
import enum
import hashlib
from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import Dataset, TensorDataset, default_collate


class Stream(str, enum.Enum):
    """The random streams of an epoch; each gives an independent generator."""

    TASK = "task"  # a task's shuffle of its training set, keyed by its name (cycle n: its n-th reshuffle)
    SCHEDULE = "schedule"  # the interleaved order of all tasks' batches (uniform, gcs, diw)
    ALPHA_DEV = "alpha_dev"  # the order of the target's dev examples αVIL's α-step reads
    DIW_DEV = "diw_dev"  # the target dev examples DIW matches the auxiliaries to
    DIW_AUX = "diw_aux"  # the auxiliary training examples DIW fits its kernel weights on


def epoch_generator(seed: int, epoch: int, stream: Stream, task: str = "", cycle: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream, task name, cycle):
    resuming at any epoch needs no saved sampler state.

    The key is hashed with BLAKE2b (stable across processes and Python
    versions, unlike ``hash()``), so distinct keys never share a seed by
    arithmetic coincidence, as a linear mix of small integers can.
    """
    key = f"{seed}/{epoch}/{Stream(stream).value}/{task}/{cycle}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)  # 63 bits: a valid seed


def batches(dataset: Dataset, indices: torch.Tensor, batch_size: int,
            collate_fn: Optional[Callable] = None) -> Iterator:
    """Collated batches of ``dataset[indices]``, in the given order."""
    tensors = dataset.tensors if isinstance(dataset, TensorDataset) and collate_fn is None else None
    collate = collate_fn or default_collate
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        if tensors is not None:
            # Fast path: one gather per tensor instead of collating single items.
            yield tuple(t[chunk] for t in tensors)
        else:
            yield collate([dataset[i] for i in chunk.tolist()])


def to_device(x, device):
    """Move a tensor, or a dict/tuple/list of tensors, to ``device``."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(to_device(v, device) for v in x)
    return x


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def sample_size(n: int, fraction: float) -> int:
    """The number of examples a task pass over a ρ-fraction (``fraction``) of
    ``n`` training examples draws: round(fraction · n), at least 1."""
    return max(1, round(fraction * n))
