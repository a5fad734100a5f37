"""Task-parallel αVIL on ``torch.distributed`` (docs/design.md §7).

αVIL's task passes are independent given θ0, so P processes (GPUs, or CPU
processes, on one node or several) can run them at once. Launch a script with
``torchrun``; the *same* ``avil.fit`` call then runs task-parallel::

    # torchrun --nproc-per-node P train.py
    device = avil.distributed.init()          # gloo on CPU, NCCL on CUDA; this rank's device
    history = avil.fit(encoder, tasks, "left", "avil", avil.FitConfig(device=device, ...))

What runs where, per epoch (K tasks, P ranks, N = parameters + float buffers):

- **Task passes.** Each rank trains the passes of the tasks it owns and holds
  only their rows of Δ (``assign_tasks``: at most ⌈K/P⌉ rows per rank) and
  their optimizers. Ownership is fixed for a run (a function of the task
  sizes, ρ, the batch size and P), so per-task optimizer state never moves.
- **Merge** θ0 + Δᵀα: every rank computes its partial sum Σ_{t owned} α_t δ_t
  with the fused kernel (rank 0 starts it from θ0), one ``all_reduce(SUM)``
  adds them; the float buffers follow FlatParameters.merge_'s mean rule.
- **α-gradient** ∇_α L = Δ·∇_θL(θ_α): the target's dev gradient g at θ_α, then
  one local ``ops.dots`` per owned task, gathered into the K-vector (an
  all_reduce of a K-vector that is zero outside each rank's own entries,
  which adds only zeros to every entry: exact). g comes from
  ``init(dev_gradient=...)``:
    "split" (default): the α-step's dev chunks (``eval_batch_size`` each) are
        dealt round-robin to the ranks, and the gradients all-reduced: the dev
        pass runs up to min(P, chunks)-fold parallel. Per evaluation of the
        objective 2 all-reduces of N floats.
    "once": rank 0 runs the whole dev pass and broadcasts g; the other ranks
        wait. Per evaluation an all-reduce and a broadcast of N floats: less
        traffic, for slow links between nodes where the dev pass is cheap
        next to moving N floats.
  Measured on this project's 2-core CPU machine (benchmarks/distributed.py,
  MultiMNIST extended, K = 5, P = 2): an epoch 1.92× faster than one process
  with "split", 1.57× with "once".
- **The α-step's solver** (avil.alpha_step.solve) runs on every rank, on the
  same (loss, gradient) values, so it takes the same steps and every rank
  ends the epoch with the same α, task weights and θ. ``TaskParallel``
  checks this after every epoch: a digest of θ and the epoch's record from
  every rank must equal rank 0's, or the run stops with DistributedError.
- **Evaluation** of the target's dev and test metrics runs on rank 0 and is
  broadcast, so every rank's History is the same.

How close a run on P processes is to a single-process run. Everything but
the merge's summation order is the same computation: the task passes (same
θ0, data, optimizer state), the dev gradient at a given θ_α ("split": the
chunks' gradients are summed in another order once there are more than two
chunks), the per-task dots (the kernel sums each row on its own). The merge
is not: the single-process kernel rounds to float32 after adding each
(pair of) α_t δ_t to θ0, in task order; here each rank rounds its own
partial sum and the all-reduce adds the partials. Accumulating the partials
in float64 (where each α_t·δ_t is exact) would not restore equality: it
rounds differently from the float32 kernel, not less. Measured on 10⁶
random elements, K = 5, the tasks split 3 + 2: the kernel's merge differs
from the P = 2 float32 partial sums in 47 % of the elements and from a
float64-accumulated merge in 36 %, each by at most 2 float32 epsilons of the
magnitudes summed, while a float64 merge in one process and float64
partials on two agreed on every element. So θ_α differs from the
single-process one by float32 rounding. How far that carries depends on
the α-solver: with a fixed number of first-order steps ("sgd") the History
stays within 1e-6 of the single-process one (tests/test_distributed.py, toy
suite, 3 epochs); L-BFGS-B's line search and stopping test turn rounding
into differences up to the solver's tolerance (toy suite, MLP encoder: α
within 3e-7 after the first epoch, 3e-3 after the third; an ill-conditioned
model, BatchNorm with merged variances near 0, diverges faster). With P = 1
the run is bit for bit the single-process one (tested), and a run on P
processes is bit for bit reproducible. Models that draw random numbers in
training (dropout) also differ: each rank draws from its own stream.

Checkpoints (``FitConfig.checkpoint_dir``, a directory every rank sees: a
shared file system across nodes). Rank 0 writes ``checkpoint.pt`` (θ,
History, task weights, every rank's RNG state) and holds the directory's
lock; each rank writes the optimizer states of its own tasks to
``task<k>.epoch<e>.pt`` first, and ``checkpoint.pt`` (renamed last) records
their names and digests, so a kill at any moment leaves the previous
complete set. A resumed ``torchrun`` run with the same P equals an
uninterrupted one; with another P it continues from the same state, each
rank reading the task files of the tasks it now owns (recorded in
``History.resumes`` as a change of ``world_size``), and is as close to an
uninterrupted run as a run on another P is. A single-process checkpoint is
not resumed under torchrun, nor the reverse (clear errors).

Faults. Every collective goes through ``Group.collective``, which turns a
backend error into DistributedError naming the rank and the step: a rank
that dies closes its connections and the others stop at their next
collective at once (gloo: "Connection reset by peer"); a rank that hangs
makes them stop after the collective timeout (``init(timeout=...)``). A
Python error on one rank (a NaN loss in its task pass, a failed evaluation
or checkpoint write) is exchanged at the next agreement point, so every rank
stops with that rank's message instead of waiting. Fewer tasks than ranks
is refused before training (an idle rank would hold a GPU for nothing).

Methods other than αVIL interleave all tasks in one optimizer trajectory:
they are not task-parallel and are refused under a process group.
"""
import contextlib
import dataclasses
import hashlib
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.distributed as dist

from . import checkpoint, io, ops
from .config import FitConfig
from .data import num_batches, sample_size
from .flat import FlatParameters
from .methods.avil import AlphaVIL
from .methods.base import EpochResult, TrainingError

DEV_GRADIENTS = ("split", "once")
# How long a rank waits in a collective for the others. A rank that finishes
# its task passes first waits there for the slowest one, so this bounds the
# load imbalance of an epoch too: raise it for task passes longer than this.
DEFAULT_TIMEOUT = timedelta(minutes=30)
# The end of every DistributedError: a failed step never touches a written checkpoint.
RESUME = ("Every checkpoint in FitConfig.checkpoint_dir (if set) is complete: once the cause is fixed, "
          "continue from the last one with avil.fit(..., resume=True) under torchrun.")
# What init() chose for the runs of this process (read by Group).
_settings = {"dev_gradient": "split"}


class DistributedError(TrainingError):
    """A task-parallel run cannot go on: another rank failed, died or timed out."""


def init(backend: Optional[str] = None, timeout: timedelta = DEFAULT_TIMEOUT,
         dev_gradient: str = "split") -> str:
    """Initialise the default process group from torchrun's environment and
    return this rank's device for ``FitConfig(device=...)``.

    backend: None picks NCCL where CUDA is available (each rank on GPU
        LOCAL_RANK, made its current device, which "cuda" then means), else
        gloo on the CPU.
    timeout: how long a collective waits for the other ranks before the run
        stops with DistributedError (``DEFAULT_TIMEOUT``).
    dev_gradient: "split" | "once", how the α-step's dev gradient is computed
        (module docstring).
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
    dist.init_process_group(backend, timeout=timeout)
    _settings["dev_gradient"] = dev_gradient
    return device


def context():
    """What ``avil.fit`` runs on: a ``Group`` when the default process group
    is initialised, else ``Local`` (one process, the plain code path)."""
    if dist.is_available() and dist.is_initialized():
        return Group()
    return Local()


# -- which rank trains which task ---------------------------------------------------

def task_costs(tasks, config: FitConfig) -> Dict[str, int]:
    """{task: optimizer steps of its pass}: ⌈round(ρ·|D_t^train|) / batch_size⌉,
    the batches ``AlphaVIL.task_passes`` trains on (Method.order's sample)."""
    return {t.name: num_batches(sample_size(len(t.train), config.rho), config.batch_size) for t in tasks}


def assign_tasks(costs: Dict[str, float], world_size: int) -> Dict[str, int]:
    """{task: rank}: longest processing time first, capped at ⌈K/P⌉ tasks per rank.

    Tasks in order of decreasing cost (ties: task-list order) each go to the
    least-loaded rank (ties: the lowest rank) among those holding fewer than
    ⌈K/P⌉ tasks. The epoch's task phase lasts as long as the most loaded
    rank: plain LPT keeps that within 4/3 of the best split. The cap bounds
    the rows of Δ (and optimizer states) a rank holds, memory being the hard
    limit; it costs balance only when a few tasks dwarf the others.
    Deterministic: every rank computes the same assignment.
    """
    names = list(costs)
    if len(names) < world_size:
        raise ValueError(
            f"{len(names)} tasks on {world_size} processes: task-parallel αVIL gives every process at least one "
            f"task pass, so {world_size - len(names)} would idle. Fix: launch at most {len(names)} processes "
            f"(torchrun --nproc-per-node {len(names)}).")
    cap = -(-len(names) // world_size)
    load, count, owner = [0.0] * world_size, [0] * world_size, {}
    for i in sorted(range(len(names)), key=lambda i: (-costs[names[i]], i)):
        rank = min((r for r in range(world_size) if count[r] < cap), key=lambda r: (load[r], r))
        owner[names[i]] = rank
        load[rank] += costs[names[i]]
        count[rank] += 1
    return {name: owner[name] for name in names}


# -- one process -----------------------------------------------------------------------

class Local:
    """One process (no process group): forwards to the plain code path."""

    rank, world_size = 0, 1

    def check(self, cls, method: str, tasks, target: str, config: FitConfig) -> FitConfig:
        return config

    def check_writable(self, directory) -> None:
        io.check_writable(directory, "FitConfig.checkpoint_dir")

    def share(self, flat: FlatParameters, config: FitConfig) -> None:
        """Nothing to share."""

    def runner_class(self, cls):
        return cls

    def locked(self, directory):
        return checkpoint.locked(directory)

    def exists(self, directory) -> bool:
        return checkpoint.exists(directory)

    def load(self, directory) -> Optional[dict]:
        state = checkpoint.load(directory)
        if state is not None and "distributed" in state:
            raise ValueError(
                f"cannot resume: the checkpoint in FitConfig.checkpoint_dir = {str(directory)!r} was written by a "
                f"task-parallel run on {state['distributed']['world_size']} processes, which keeps each task's "
                "optimizer state in its own file. Fix: resume it under torchrun (any --nproc-per-node up to the "
                "number of tasks; 1 runs it in one process).")
        return state

    def save(self, directory, state: dict) -> None:
        checkpoint.save(directory, state)

    def once(self, what: str, fn: Callable):
        return fn()

    def resume_changes(self, state: dict) -> dict:
        return {}


# -- P processes ---------------------------------------------------------------------

class Group:
    """The default process group, as a task-parallel ``avil.fit`` uses it:
    the checks before training, the collectives (each through ``collective``),
    agreement on errors, and rank-aware checkpoints."""

    def __init__(self):
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.backend = dist.get_backend()
        self.dev_gradient = _settings["dev_gradient"]
        self.owner: Dict[str, int] = {}  # {task: rank}, set by check()
        self.own: List[str] = []  # this rank's tasks, in task-list order, set by check()
        self.names: List[str] = []

    # -- collectives ---------------------------------------------------------
    def collective(self, what: str, op: Callable, *args):
        """Run one collective; a backend failure becomes a DistributedError naming the step."""
        try:
            return op(*args)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what} failed ({type(err).__name__}: {first}). Another "
                "process of the run died, or did not reach this step within the collective timeout "
                f"(avil.distributed.init(timeout=...)); its own output names the cause. {RESUME}") from err

    def all_reduce(self, what: str, tensor: torch.Tensor) -> None:
        self.collective(what, dist.all_reduce, tensor)

    def broadcast(self, what: str, tensor: torch.Tensor) -> None:
        self.collective(what, dist.broadcast, tensor, 0)

    def all_gather_object(self, what: str, obj) -> list:
        out = [None] * self.world_size
        self.collective(what, dist.all_gather_object, out, obj)
        return out

    def broadcast_object(self, what: str, obj):
        box = [obj]
        self.collective(what, dist.broadcast_object_list, box, 0)
        return box[0]

    # -- agreement on errors ----------------------------------------------------
    def agree(self, what: str, error: Optional[BaseException], payload=None) -> list:
        """Every rank says whether ``what`` failed on it, with a payload; returns
        the payloads by rank. If it failed anywhere, every rank raises: the
        failing rank its own error, the others a DistributedError with its message."""
        report = None if error is None else f"{type(error).__name__}: {error}"
        gathered = self.all_gather_object(what, (report, payload))
        if error is not None:
            raise error
        for rank, (message, _) in enumerate(gathered):
            if message is not None:
                raise DistributedError(f"rank {rank} of {self.world_size} failed in {what}: {message} {RESUME}")
        return [p for _, p in gathered]

    def together(self, what: str, fn: Callable):
        """Run ``fn`` on every rank and return its result here; if it raised on
        any rank, every rank raises (``agree``)."""
        result, error = self._attempt(fn)
        self.agree(what, error)
        return result

    def gather(self, what: str, fn: Callable) -> list:
        """``together``, returning every rank's (small, picklable) result, by rank."""
        result, error = self._attempt(fn)
        return self.agree(what, error, result)

    @staticmethod
    def _attempt(fn: Callable):
        try:
            return fn(), None
        except DistributedError:  # a collective inside failed: the others know already
            raise
        except Exception as err:  # handed to every rank by agree()
            return None, err

    def once(self, what: str, fn: Callable):
        """Run ``fn`` on rank 0 only; its result (small, picklable) on every rank."""
        result, error = self._attempt(fn) if self.rank == 0 else (None, None)
        report = None if error is None else f"{type(error).__name__}: {error}"
        result, report = self.broadcast_object(what, (result, report))
        if error is not None:
            raise error
        if report is not None:
            raise DistributedError(f"rank 0 of {self.world_size} failed in {what}: {report} {RESUME}")
        return result

    # -- before training -----------------------------------------------------------
    def check(self, cls, method: str, tasks, target: str, config: FitConfig) -> FitConfig:
        """Refuse what cannot run task-parallel, before any training; assign
        the tasks. Returns the config this rank runs with (progress bars on
        rank 0 only)."""
        run = {"method": method, "target": target,
               "tasks": [[t.name, len(t.train), len(t.dev), len(t.test)] for t in tasks],
               "config": {k: v for k, v in config.to_dict().items() if k not in ("device", "progress")}}
        for rank, other in enumerate(self.all_gather_object("comparing the ranks' avil.fit calls", run)):
            different = [key for key in run if other[key] != run[key]]
            if different:
                raise ValueError(
                    f"rank {rank} of {self.world_size} calls avil.fit with another {different[0]} than rank "
                    f"{self.rank} ({other[different[0]]!r} there, {run[different[0]]!r} here). Fix: every "
                    "process of a torchrun run must call avil.fit with the same tasks, target, method and "
                    "FitConfig (only device may differ).")
        if not issubclass(cls, AlphaVIL):
            raise ValueError(
                f"method {method!r} is not task-parallel: under torchrun (an initialised torch.distributed "
                f"process group, here {self.world_size} processes) avil.fit runs only 'avil', whose task passes "
                "are independent. Fix: run this method in a plain single process (python script.py, without "
                "torchrun and without avil.distributed.init()).")
        device = torch.device(config.device)
        if (self.backend == "nccl") != (device.type == "cuda"):
            raise ValueError(
                f"FitConfig.device = {config.device!r} with a {self.backend} process group: NCCL reduces CUDA "
                "tensors and gloo CPU tensors here. Fix: FitConfig(device=avil.distributed.init()), which "
                "pairs them.")
        if device.type == "cuda" and device.index not in (None, torch.cuda.current_device()):
            raise ValueError(
                f"FitConfig.device = {config.device!r} on rank {self.rank}, whose GPU is "
                f"cuda:{torch.cuda.current_device()}. Fix: FitConfig(device=avil.distributed.init()).")
        self.names = [t.name for t in tasks]
        self.owner = assign_tasks(task_costs(tasks, config), self.world_size)
        self.own = [name for name in self.names if self.owner[name] == self.rank]
        # "cuda" (the rank's own GPU) rather than "cuda:<rank>": the History, which
        # records the config, and a resume's check of it are the same on every rank.
        return dataclasses.replace(config, device=device.type, progress=config.progress and self.rank == 0)

    def check_writable(self, directory) -> None:
        """Rank 0 checks the directory and leaves a token there; every rank must
        read it (a file system they share) and write there itself."""
        directory = Path(directory)
        token, error = secrets.token_hex(8), None
        if self.rank == 0:
            try:
                io.check_writable(directory, "FitConfig.checkpoint_dir")
                io.write_text(directory / f".avil-shared-{token}", token)
            except Exception as err:
                error = err
        token = self.agree("checking FitConfig.checkpoint_dir", error, token)[0]
        shared, error = directory / f".avil-shared-{token}", None
        try:
            shared.read_text()
            probe = directory / f".avil-write-test-rank{self.rank}"
            io.write_text(probe, "ok")
            probe.unlink()
        except OSError as err:
            error = ValueError(
                f"FitConfig.checkpoint_dir = {str(directory)!r} is not shared by rank 0 and rank {self.rank}, or "
                f"not writable here ({type(err).__name__}: {err}). Fix: put checkpoint_dir on a file system "
                "every process sees and can write (e.g. NFS across nodes).")
        self.agree("checking FitConfig.checkpoint_dir on every rank", error)
        if self.rank == 0:
            shared.unlink()

    def share(self, flat: FlatParameters, config: FitConfig) -> None:
        """Every rank starts from rank 0's θ (as DDP does), after checking that
        all built the same model; ranks > 0 reseed their global RNG so that
        random ops in training (dropout) do not repeat rank 0's draws."""
        layouts = self.all_gather_object("comparing the ranks' models", flat.layout)
        for rank, layout in enumerate(layouts):
            if layout != flat.layout:
                raise ValueError(
                    f"rank {rank} built another model than rank {self.rank} ({len(layout)} against "
                    f"{len(flat.layout)} parameter and buffer tensors, or other shapes). Fix: build the encoder "
                    "and heads the same way in every process.")
        self.broadcast("sharing rank 0's parameters", flat.data)
        for buffer in flat.other_buffers.values():
            self.broadcast("sharing rank 0's buffers", buffer)
        if self.rank > 0:
            torch.manual_seed(_derived_seed(config.seed, self.rank))

    def runner_class(self, cls):
        """The task-parallel version of an AlphaVIL class (``check`` refused others)."""
        return type(f"TaskParallel{cls.__name__}", (TaskParallel, cls), {"group": self})

    # -- checkpoints ----------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, directory):
        """Rank 0 holds the directory's lock (non-blocking: it fails at once if
        another run holds it, and every rank then raises)."""
        with contextlib.ExitStack() as stack:
            error = None
            if self.rank == 0:
                try:
                    stack.enter_context(checkpoint.locked(directory))
                except Exception as err:
                    error = err
            self.agree("locking FitConfig.checkpoint_dir", error)
            yield Path(directory)

    def exists(self, directory) -> bool:
        return self.once("looking for a checkpoint", lambda: checkpoint.exists(directory))

    def save(self, directory, state: dict) -> None:
        """Each rank writes its tasks' optimizer states, then rank 0 writes
        ``checkpoint.pt`` naming them, then deletes the previous epoch's files."""
        epochs = len(state["history"]["dev"])
        method = dict(state["method"])
        optimizers, method["optimizers"] = method["optimizers"], {}

        def write_tasks():
            files = {}
            for name, opt_state in optimizers.items():
                filename = checkpoint.task_filename(self.names.index(name), epochs)
                files[name] = [filename, checkpoint.write(Path(directory) / filename,
                                                          {"task": name, "epochs": epochs, "optimizer": opt_state})]
            return files, state["rng"]

        parts = self.gather(f"writing the task files of epoch {epochs}", write_tasks)

        def write_main():
            files = {name: f for f_rank, _ in parts for name, f in f_rank.items()}
            files = {name: files[name] for name in self.names}
            main = dict(state, method=method, distributed={
                "world_size": self.world_size, "files": files, "rng": [rng for _, rng in parts]})
            checkpoint.save(directory, main)
            checkpoint.remove_task_files(directory, keep={f for f, _ in files.values()})

        self.once(f"writing the checkpoint of epoch {epochs}", write_main)

    def load(self, directory) -> Optional[dict]:
        """The checkpoint with this rank's optimizer states and RNG state in
        place (``state["method"]["optimizers"]``, ``state["rng"]``), or None."""
        def read_main():
            state = checkpoint.load(directory)
            if state is not None and "distributed" not in state:
                raise ValueError(
                    f"cannot resume: the checkpoint in FitConfig.checkpoint_dir = {str(directory)!r} was written by "
                    "a single-process run, which keeps every task's optimizer state in checkpoint.pt. Fix: resume "
                    "it in a single process (without torchrun), or start a task-parallel run in another "
                    "checkpoint_dir.")
            return state

        state = self.together("reading the checkpoint", read_main)
        seen = self.all_gather_object("comparing the checkpoints the ranks read",
                                      None if state is None else state["distributed"]["files"])
        if any(s != seen[0] for s in seen):
            raise ValueError(
                f"the ranks read different checkpoints in FitConfig.checkpoint_dir = {str(directory)!r}. Fix: put "
                "checkpoint_dir on a file system every process shares (e.g. NFS across nodes).")
        if state is None:
            return None
        distributed = state["distributed"]

        def read_tasks():
            optimizers = {}
            for name in self.own:
                filename, digest = distributed["files"][name]
                part = checkpoint.load(directory, filename, expected_digest=digest)
                if part is None:
                    raise checkpoint.CheckpointError(
                        f"the checkpoint in {directory} names {filename} (task '{name}'s optimizer state), which is "
                        "missing. Fix: restore the file, or start afresh with avil.fit(..., overwrite=True).")
                optimizers[name] = part["optimizer"]
            return optimizers

        state["method"] = dict(state["method"], optimizers=self.together("reading the task files", read_tasks))
        rngs = distributed["rng"]
        if len(rngs) == self.world_size:
            state["rng"] = rngs[self.rank]
        else:  # another P: rank 0 goes on from rank 0's stream, the others from fresh ones
            state["rng"] = rngs[0]
            if self.rank > 0:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(_derived_seed(state["history"]["seed"], self.rank, len(state["history"]["dev"])))
                    state["rng"] = dict(rngs[0], torch=torch.get_rng_state())
        return state

    def resume_changes(self, state: dict) -> dict:
        """What a resume changed beyond FitConfig: the number of processes."""
        before = state["distributed"]["world_size"]
        return {} if before == self.world_size else {"world_size": [before, self.world_size]}


def _derived_seed(*key) -> int:
    digest = hashlib.blake2b("/".join(map(str, ("avil-rank",) + key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# -- the task-parallel αVIL runner -----------------------------------------------------

class TaskParallel:
    """Mixed in before an AlphaVIL class by ``Group.runner_class``: the same
    epoch (Algorithm 1), with the hooks of AlphaVIL distributed over the group
    (module docstring)."""

    group: Group

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        n, n_buffers = self.flat.numel, self.flat.numel - self.flat.param_numel
        self.rows = torch.tensor([self.names.index(name) for name in self.own], device=self.device)  # (K_r,)
        # This rank's share of the merge: Σ_{t own} α_t δ_t (N,) (plus θ0 on rank 0),
        # then Σ_{t own} α_t δ_t on the float buffers again (for the mean rule), one all-reduce.
        self.partial = torch.empty(n + n_buffers, dtype=torch.float32, device=self.device)  # (N + N_b,)

    def owned_tasks(self) -> List[str]:
        return list(self.group.own)

    def train_epoch(self, epoch: int) -> EpochResult:
        result = super().train_epoch(epoch)
        self.check_identical(epoch, result)
        return result

    def task_passes(self, epoch: int) -> dict:
        """This rank's task passes; every task's mean loss on every rank. Counters
        among the buffers (BatchNorm's num_batches_tracked) count every rank's batches."""
        counters = list(self.flat.other_buffers.values())
        before = [c.clone() for c in counters]
        parent = super().task_passes
        losses = {}
        for part in self.group.gather(f"the task passes of epoch {epoch + 1}", lambda: parent(epoch)):
            losses.update(part)
        if counters:
            moved = torch.cat([(c - b).reshape(-1).to(torch.int64) for c, b in zip(counters, before)])
            self.group.all_reduce("adding up the buffers' counters", moved)
            for c, b, m in zip(counters, before, moved.split([c.numel() for c in counters])):
                c.copy_(b + m.view_as(b).to(b.dtype))
        return {name: losses[name] for name in self.names}

    def merge(self, alphas: torch.Tensor) -> None:
        n, p = self.flat.numel, self.flat.param_numel
        alphas = alphas.to(self.device)  # (K,)
        own = alphas[self.rows]  # (K_r,)
        head = self.partial[:n]  # (N,)
        if self.group.rank == 0:
            head.copy_(self.theta0)
        else:
            head.zero_()
        ops.merge_(head, self.deltas, own)
        if n > p:  # as FlatParameters.merge_ computes it
            self.partial[n:] = self.deltas[:, p:].to(torch.float32).t() @ own
        self.group.all_reduce("the merge θ0 + Δᵀα", self.partial)
        self.flat.data.copy_(head)
        if n > p:
            self.flat.data[p:].sub_(self.partial[n:], alpha=1 - 1 / len(self.names))

    def dev_loss(self, dev_batches: Sequence, shares: Sequence[float], gradient: bool = True) -> torch.Tensor:
        parent = super().dev_loss
        if self.group.dev_gradient == "once":
            value = self.group.once("the α-step's dev pass",
                                    lambda: parent(dev_batches, shares, gradient).item())
            if gradient:
                self.group.broadcast("broadcasting the dev gradient", self.flat.grad)
            return torch.tensor(value)
        mine = slice(self.group.rank, None, self.group.world_size)  # chunks r, r + P, ...
        values = self.group.gather("the α-step's dev pass",
                                   lambda: parent(dev_batches[mine], shares[mine], gradient).item())
        if gradient:
            self.group.all_reduce("adding up the dev gradient", self.flat.grad)
        loss = torch.zeros(())
        for value in values:  # in rank order, in float32, as one process adds its chunks' losses
            loss += value
        return loss

    def alpha_gradient(self) -> torch.Tensor:
        grad = torch.zeros(len(self.names), device=self.device)  # (K,)
        grad[self.rows] = ops.dots(self.deltas, self.flat.grad)
        self.group.all_reduce("gathering Δ·g", grad)
        return grad.cpu()

    def check_identical(self, epoch: int, result: EpochResult) -> None:
        """Every rank's θ (a digest of its bytes, dtype and shape) and epoch record equal rank 0's."""
        record = {k: v for k, v in result.as_dict().items() if k != "alpha_step"}
        record["alpha_step"] = {k: v for k, v in (result.alpha_step or {}).items() if k != "seconds"}
        record["theta"] = checkpoint.digest(self.flat.data)
        record["counters"] = [c.tolist() for c in self.flat.other_buffers.values()]
        seen = self.group.all_gather_object(f"comparing the ranks after epoch {epoch + 1}", record)
        for rank, other in enumerate(seen):
            different = [key for key in record if other[key] != seen[0][key]]
            if different:
                raise DistributedError(
                    f"after epoch {epoch + 1}, rank {rank} holds another {different} than rank 0: the ranks "
                    "diverged, which they must never do (a non-deterministic kernel, or ranks on different "
                    "hardware or software). Fix: run every rank on the same kind of device with the same "
                    "torch and avil; please report it with both ranks' output.")
