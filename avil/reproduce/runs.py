"""The method-by-seed comparison loop: ``Run`` and ``run_all`` (serial or in
forked processes), ``compare`` (methods and variants × seeds) and
``auxiliary_effects`` (each auxiliary's measured effect on the target)."""
import dataclasses
import multiprocessing
import multiprocessing.connection
import time
import traceback
import warnings
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from ..config import FitConfig
from ..data import num_batches
from ..history import History
from ..trainer import fit
from .stats import PairedDifference, paired_difference


class CompareError(RuntimeError):
    """Some runs failed. ``failures`` maps (label, seed) to the run's
    traceback; ``histories`` holds every run that finished, grouped by label
    as the function that raised would have returned them."""

    def __init__(self, failures: Dict[Tuple[str, int], str], histories: Dict[str, List[History]]):
        self.failures, self.histories = failures, histories
        lines = [f"  {label} seed {seed}: {tb.strip().splitlines()[-1]}" for (label, seed), tb in failures.items()]
        super().__init__(f"{len(failures)} run(s) failed (the rest finished; their results are in "
                         f"this error's .histories):\n" + "\n".join(lines))


class Run(NamedTuple):
    """One ``fit`` to make: ``label`` names it in progress lines and results."""

    label: str
    method: str
    seed: int
    make_run: Callable[[int], tuple]  # seed -> (encoder, tasks)
    target: str
    config: FitConfig


# The runs forked workers take theirs from, set before the first fork, so
# make_run may be any callable (a closure or a lambda in a notebook).
_RUNS: List[Run] = []


def _fit(run: Run):
    """(History or None, traceback or None, seconds) of one run."""
    start = time.perf_counter()
    try:
        encoder, tasks = run.make_run(run.seed)
        history = fit(encoder, tasks, run.target, run.method, dataclasses.replace(run.config, seed=run.seed))
        return history, None, time.perf_counter() - start
    except Exception:  # reported per run; the other runs go on
        return None, traceback.format_exc(), time.perf_counter() - start


def _worker(conn, index: int) -> None:
    """A forked process's whole life: one run, one torch thread, the outcome sent back."""
    torch.set_num_threads(1)
    conn.send(_fit(_RUNS[index]))
    conn.close()


def _parallel(count: int, workers: int):
    """Yield (index, outcome) of runs 0..count-1 of ``_RUNS`` as each finishes:
    a fresh forked process per run, at most ``workers`` at a time, so a process
    that dies (killed, out of memory) fails its own run only."""
    if "fork" not in multiprocessing.get_all_start_methods():
        raise RuntimeError("workers > 1 needs the 'fork' start method (Linux): the workers inherit make_run, "
                           "which may be a closure. Fix: workers=1 on this platform.")
    context = multiprocessing.get_context("fork")
    pending = list(range(count))
    active = {}  # run index -> (process, receiving end of its pipe)
    try:
        while pending or active:
            while pending and len(active) < workers:
                index = pending.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_worker, args=(send, index))
                process.start()
                send.close()  # the child holds the only sending end: its exit means EOF here
                active[index] = (process, receive)
            ready = multiprocessing.connection.wait([receive for _, receive in active.values()])
            for index, (process, receive) in list(active.items()):
                if receive not in ready:
                    continue
                try:
                    outcome = receive.recv()
                except EOFError:
                    process.join()
                    outcome = (None, f"RuntimeError: the worker process died (exit code {process.exitcode}; "
                                     "negative: killed by that signal, e.g. out of memory)", 0.0)
                process.join()
                receive.close()
                del active[index]
                yield index, outcome
    finally:  # interrupted (or a failure above): no run keeps computing unseen
        for process, _ in active.values():
            process.terminate()
            process.join()


def run_all(runs: Sequence[Run], workers: int = 1, progress: bool = True) -> Dict[str, List[History]]:
    """Make every run: ``{label: [History per run of that label, in the given order]}``.

    workers: how many runs go at once, each in its own forked process with one
        torch thread (Linux; make_run need not be picklable, the workers inherit
        it). The Histories equal a ``workers=1`` run with one torch thread. CPU
        only: CUDA cannot be used in a forked process, so runs on a GPU go
        one at a time in this process, with a warning. Workers show no
        progress bars (``config.progress`` is ignored there).
    progress: one line per finished run (label, seed, test metric, seconds).
    A run that raises, or whose process dies, is reported at once (label, seed
    and the error); the others go on, and a ``CompareError`` at the end carries
    every traceback and the finished runs' Histories.
    """
    global _RUNS
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r}: must be a positive integer (1 runs in this process).")
    devices = sorted({str(r.config.device) for r in runs if torch.device(r.config.device).type != "cpu"})
    if workers > 1 and devices:
        # CUDA cannot be used in a forked process: the runs go one after another here instead.
        warnings.warn(f"workers={workers} runs forked CPU processes, but the runs' device is {', '.join(devices)}: "
                      "running them one at a time in this process (workers=1). Set workers=1 (a notebook's "
                      "WORKERS = 1) on a GPU to silence this.", stacklevel=2)
        workers = 1
    if workers == 1:
        outcomes = ((i, _fit(run)) for i, run in enumerate(runs))
    else:
        _RUNS = [run._replace(config=dataclasses.replace(run.config, progress=False)) for run in runs]
        outcomes = _parallel(len(runs), min(workers, len(runs)))
    finished: Dict[int, History] = {}
    failures: Dict[Tuple[str, int], str] = {}
    width = len(str(len(runs)))
    try:
        for done, (index, (history, error, seconds)) in enumerate(outcomes, 1):
            run = runs[index]
            head = f"[{done:>{width}}/{len(runs)}] {run.label:<12} seed {run.seed}:"
            if error is not None:
                failures[(run.label, run.seed)] = error
                print(f"{head} FAILED after {seconds:.0f} s: {error.strip().splitlines()[-1]}", flush=True)
                continue
            finished[index] = history
            if progress:
                # One line per run: readable in a notebook's saved output and in logs.
                print(f"{head} test {history.test:.4f} (best dev epoch {history.best_epoch}), {seconds:.0f} s",
                      flush=True)
    finally:
        _RUNS = []
    out: Dict[str, List[History]] = {}
    for index, run in enumerate(runs):
        out.setdefault(run.label, [])
        if index in finished:
            out[run.label].append(finished[index])
    if failures:
        raise CompareError(failures, out)
    return out


def compare(make_run: Callable[[int], tuple], target: str, methods: Sequence[str], seeds: Sequence[int],
            config: FitConfig, progress: bool = True, workers: int = 1,
            variants: Optional[Dict[str, Tuple[str, FitConfig]]] = None) -> Dict[str, List[History]]:
    """Fit every method under every seed: ``{method: [History per seed]}``.

    ``make_run(seed) -> (encoder, tasks)`` builds a fresh encoder and tasks, so
    each run starts from the same initialisation for a given seed.
    variants: more runs under their own label and config, ``{label: (method,
        config)}`` (e.g. ``{"avil (additive w)": ("avil", paper_rule)}``), after
        the methods in the result.
    workers, progress, errors: as ``run_all``, which runs them all together.
    """
    labelled = [(m, m, config) for m in methods] + [(label, m, c) for label, (m, c) in (variants or {}).items()]
    clash = sorted({label for label, _, _ in labelled if [x for x, _, _ in labelled].count(label) > 1})
    if clash:
        raise ValueError(f"labels {clash} name two sets of runs. Fix: give each variant a label of its own.")
    return run_all([Run(label, method, seed, make_run, target, cfg) for label, method, cfg in labelled
                    for seed in seeds], workers=workers, progress=progress)


@dataclasses.dataclass
class AuxiliaryEffect:
    """One auxiliary's measured effect on the target: ``method`` trained on
    [target, auxiliary] against ``baseline`` on the same pair (so with as many
    optimizer steps), paired per seed on the target's test metric."""

    auxiliary: str
    method: str
    baseline: str
    joint: List[History]  # method on [target, auxiliary], one per seed
    # baseline on [target, auxiliary], one per seed; possibly the run of another
    # auxiliary with as many batches (same target numbers, see auxiliary_effects)
    alone: List[History]

    @property
    def difference(self) -> PairedDifference:
        return paired_difference([h.test for h in self.joint], [h.test for h in self.alone])

    def to_dict(self) -> dict:
        return {"auxiliary": self.auxiliary, "method": self.method, "baseline": self.baseline,
                "seeds": [h.seed for h in self.joint], "test": [h.test for h in self.joint],
                "baseline_test": [h.test for h in self.alone], "difference": self.difference.to_dict(),
                "histories": [h.to_dict() for h in self.joint], "baseline_histories": [h.to_dict() for h in self.alone]}


def _pair(make_run: Callable[[int], tuple], keep: Tuple[str, str]) -> Callable[[int], tuple]:
    """make_run restricted to the tasks in ``keep`` (in the suite's order)."""
    def run(seed):
        encoder, tasks = make_run(seed)
        return encoder, [t for t in tasks if t.name in keep]
    return run


def auxiliary_effects(make_run: Callable[[int], tuple], target: str, auxiliaries: Sequence[str],
                      seeds: Sequence[int], config: FitConfig, method: str = "uniform",
                      baseline: str = "single_task", workers: int = 1,
                      progress: bool = True) -> Dict[str, AuxiliaryEffect]:
    """Each auxiliary's effect on the target, measured: ``{auxiliary: AuxiliaryEffect}``.

    For every auxiliary a and seed, ``method`` (standard multitask learning by
    default) on the pair [target, a] against ``baseline`` (``single_task``,
    which takes as many optimizer steps as ``uniform`` on the same pair). So
    "helpful" and "harmful" become measurements (``effect.difference``, a
    paired t-interval), not labels. ``make_run(seed) -> (encoder, tasks)``
    builds the whole suite; each run keeps the target and one auxiliary.

    single_task on [target, a] uses a's data only for its step count, so one
    baseline run per seed serves every auxiliary with the same number of
    training batches (``make_run`` is called once per seed here to count
    them). workers, progress, errors: as ``run_all``, all runs together.
    """
    auxiliaries = list(auxiliaries)
    if not auxiliaries or target in auxiliaries or len(set(auxiliaries)) != len(auxiliaries):
        raise ValueError(f"auxiliaries={auxiliaries}: give each auxiliary once, not the target {target!r}.")
    runs, shared = [], {}  # shared: (seed, auxiliary) -> label of the baseline run it uses
    for seed in seeds:
        sizes = {t.name: len(t.train) for t in make_run(seed)[1]}
        missing = [name for name in [target, *auxiliaries] if name not in sizes]
        if missing:
            raise ValueError(f"tasks {missing} are not in the suite make_run({seed}) builds ({sorted(sizes)}). "
                             "Fix: name auxiliaries among its tasks.")
        first_of_size = {}
        for aux in auxiliaries:
            steps = num_batches(sizes[aux], config.batch_size)
            if steps not in first_of_size:
                first_of_size[steps] = aux
                runs.append(Run(f"{baseline} [{aux}]", baseline, seed, _pair(make_run, (target, aux)), target, config))
            shared[(seed, aux)] = f"{baseline} [{first_of_size[steps]}]"
            runs.append(Run(f"{method} + {aux}", method, seed, _pair(make_run, (target, aux)), target, config))
    histories = run_all(runs, workers=workers, progress=progress)
    by_seed = {label: {h.seed: h for h in hs} for label, hs in histories.items()}
    return {aux: AuxiliaryEffect(aux, method, baseline, [by_seed[f"{method} + {aux}"][s] for s in seeds],
                                 [by_seed[shared[(s, aux)]][s] for s in seeds]) for aux in auxiliaries}
