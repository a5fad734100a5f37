"""Batching without DataLoader workers: orders come from seeded generators, so
a run (and a resumed run) sees exactly the same batches."""
from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import Dataset, TensorDataset, default_collate


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream): resuming at any
    epoch needs no saved sampler state."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7_919 + stream * 104_729)


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
