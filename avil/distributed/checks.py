"""Before training, on every rank: the run is the same everywhere, it can run
task-parallel, the checkpoint directory is shared, every rank starts from
rank 0's θ. Each function takes the ``Group`` and is called by its
``Parallel`` method of the same purpose."""
import dataclasses
import hashlib
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from .. import io
from ..config import FitConfig
from ..flat import FlatParameters
from ..methods.avil import AlphaVIL

if TYPE_CHECKING:
    from .group import Group


def check_run(group: "Group", cls: type, method: str, tasks: Sequence, target: str,
              config: FitConfig) -> FitConfig:
    """Refuse what cannot run task-parallel, before any training. Returns the
    config this rank runs with (progress bars on rank 0 only)."""
    run = {"method": method, "target": target,
           "tasks": [[t.name, len(t.train), len(t.dev), len(t.test)] for t in tasks],
           "config": {k: v for k, v in config.to_dict().items() if k not in ("device", "progress")}}
    for rank, other in enumerate(group.all_gather_object("comparing the ranks' avil.fit calls", run)):
        different = [key for key in run if other[key] != run[key]]
        if different:
            raise ValueError(
                f"rank {rank} of {group.world_size} calls avil.fit with another {different[0]} than rank "
                f"{group.rank} ({other[different[0]]!r} there, {run[different[0]]!r} here). Fix: every "
                "process of a torchrun run must call avil.fit with the same tasks, target, method and "
                "FitConfig (only device may differ).")
    if not issubclass(cls, AlphaVIL):
        raise ValueError(
            f"method {method!r} is not task-parallel: under torchrun (an initialised torch.distributed "
            f"process group, here {group.world_size} processes) avil.fit runs only 'avil', whose task passes "
            "are independent. Fix: run this method in a plain single process (python script.py, without "
            "torchrun and without avil.distributed.init()).")
    device = torch.device(config.device)
    if (group.backend == "nccl") != (device.type == "cuda"):
        raise ValueError(
            f"FitConfig.device = {config.device!r} with a {group.backend} process group: NCCL reduces CUDA "
            "tensors and gloo CPU tensors here. Fix: FitConfig(device=avil.distributed.init()), which "
            "pairs them.")
    if device.type == "cuda" and device.index not in (None, torch.cuda.current_device()):
        raise ValueError(
            f"FitConfig.device = {config.device!r} on rank {group.rank}, whose GPU is "
            f"cuda:{torch.cuda.current_device()}. Fix: FitConfig(device=avil.distributed.init()).")
    # "cuda" (the rank's own GPU) rather than "cuda:<rank>": the History, which
    # records the config, and a resume's check of it are the same on every rank.
    return dataclasses.replace(config, device=device.type, progress=config.progress and group.rank == 0)


def check_shared_directory(group: "Group", directory) -> None:
    """Rank 0 checks the directory and leaves a token there; every rank must
    read it (a file system they share) and write there itself."""
    directory = Path(directory)
    token, error = secrets.token_hex(8), None
    if group.rank == 0:
        try:
            io.check_writable(directory, "FitConfig.checkpoint_dir")
            io.write_text(directory / f".avil-shared-{token}", token)
        except Exception as err:
            error = err
    token = group.agree("checking FitConfig.checkpoint_dir", error, token)[0]
    shared, error = directory / f".avil-shared-{token}", None
    try:
        shared.read_text()
        probe = directory / f".avil-write-test-rank{group.rank}"
        io.write_text(probe, "ok")
        probe.unlink()
    except OSError as err:
        error = ValueError(
            f"FitConfig.checkpoint_dir = {str(directory)!r} is not shared by rank 0 and rank {group.rank}, or "
            f"not writable here ({type(err).__name__}: {err}). Fix: put checkpoint_dir on a file system "
            "every process sees and can write (e.g. NFS across nodes).")
    group.agree("checking FitConfig.checkpoint_dir on every rank", error)
    if group.rank == 0:
        shared.unlink()


def share_parameters(group: "Group", flat: FlatParameters, config: FitConfig) -> None:
    """Every rank starts from rank 0's θ (as DDP does), after checking that
    all built the same model; ranks > 0 reseed their global RNG so that
    random ops in training (dropout) do not repeat rank 0's draws."""
    layouts = group.all_gather_object("comparing the ranks' models", flat.layout)
    for rank, layout in enumerate(layouts):
        if layout != flat.layout:
            raise ValueError(
                f"rank {rank} built another model than rank {group.rank} ({len(layout)} against "
                f"{len(flat.layout)} parameter and buffer tensors, or other shapes). Fix: build the encoder "
                "and heads the same way in every process.")
    group.broadcast("sharing rank 0's parameters", flat.data)
    for buffer in flat.other_buffers.values():
        group.broadcast("sharing rank 0's buffers", buffer)
    if group.rank > 0:
        torch.manual_seed(rank_seed(config.seed, group.rank))


def rank_seed(*key) -> int:
    """A seed for a rank's own random stream, derived from ``key`` (the run's seed, the rank, ...)."""
    digest = hashlib.blake2b("/".join(map(str, ("avil-rank",) + key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
