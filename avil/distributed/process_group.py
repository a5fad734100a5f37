"""The default process group's life: ``init`` from torchrun's environment,
``shutdown`` (also run at exit), and ``context``, what ``avil.fit`` runs on."""
import atexit
import importlib
import os
from datetime import timedelta
from typing import Optional

import torch
import torch.distributed as dist

from .group import Group
from .parallel import Local, Parallel

DEV_GRADIENTS = ("split", "once")
# How long a rank waits in a collective for the others. A rank that finishes
# its task passes first waits there for the slowest one, so this bounds the
# load imbalance of an epoch too: raise it for task passes longer than this.
DEFAULT_TIMEOUT = timedelta(minutes=30)
# What init() chose for the runs of this process (read by context()).
_settings = {"dev_gradient": "split", "shutdown_at_exit": False}


def init(backend: Optional[str] = None, timeout: timedelta = DEFAULT_TIMEOUT,
         dev_gradient: str = "split") -> str:
    """Initialise the default process group from torchrun's environment and
    return this rank's device for ``FitConfig(device=...)``. The group is
    destroyed when the script ends (``shutdown``, registered with ``atexit``).

    backend: None picks NCCL where CUDA is available (each rank on GPU
        LOCAL_RANK, made its current device, which "cuda" then means), else
        gloo on the CPU.
    timeout: how long a collective waits for the other ranks before the run
        stops with DistributedError (``DEFAULT_TIMEOUT``).
    dev_gradient: "split" | "once", how the α-step's dev gradient is computed
        (docs/design.md §7).
    """
    if dev_gradient not in DEV_GRADIENTS:
        raise ValueError(f"dev_gradient={dev_gradient!r}: must be one of {DEV_GRADIENTS}.")
    missing = [k for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"avil.distributed.init: the environment lacks {missing}, which torchrun sets for each process. "
            "Fix: launch the script with `torchrun --nproc-per-node P script.py` (README, \"Running αVIL on "
            "many GPUs or nodes\"), or call avil.fit without init() to train in this one process.")
    if dist.is_initialized():
        raise RuntimeError("avil.distributed.init: the default process group is already initialised. "
                           "Fix: call init() once per process.")
    local_rank = int(os.environ["LOCAL_RANK"])
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    device = "cpu"
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"avil.distributed.init: LOCAL_RANK {local_rank} but this node has "
                               f"{torch.cuda.device_count()} GPUs. Fix: torchrun --nproc-per-node ≤ the GPU count.")
        torch.cuda.set_device(local_rank)
        device = "cuda"  # this rank's GPU: the same string on every rank, so their Histories are equal
    # Imported before the group exists: torch.optim imports torch._dynamo on
    # first use, and imported while a group exists it keeps references to it,
    # so destroy_process_group could not stop gloo's worker threads (measured,
    # torch 2.13). A worker that releases its last collective while Python
    # shuts down aborts the process ("terminate called without an active
    # exception") after all its work is done, and torchrun reports a failure.
    importlib.import_module("torch._dynamo")
    dist.init_process_group(backend, timeout=timeout)
    _settings["dev_gradient"] = dev_gradient
    if not _settings["shutdown_at_exit"]:
        atexit.register(shutdown)  # so no worker thread outlives the interpreter
        _settings["shutdown_at_exit"] = True
    return device


def shutdown() -> None:
    """Destroy the default process group, if there is one. Runs at exit after
    ``init``; call it to end the group earlier (e.g. before single-process
    work at the end of a script). Waits for no other rank: safe after an error."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def context() -> Parallel:
    """What ``avil.fit`` runs on: a ``Group`` when the default process group
    is initialised, else ``Local`` (one process, the plain code path)."""
    if dist.is_available() and dist.is_initialized():
        return Group(dev_gradient=_settings["dev_gradient"])
    return Local()
