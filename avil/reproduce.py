"""What the notebooks share: profiles, the method-by-seed comparison loop
(serial or in parallel processes), summary tables, weight plots, provenance
and results files, and each notebook's closing cell (``finish``); and the
``make reproduce`` entry point, which executes every notebook with papermill
(docs/design.md §6).

    python -m avil.reproduce --profile default            # into results/<notebook>/
    python -m avil.reproduce --profile default --inplace  # refresh the committed notebooks
"""
import argparse
import dataclasses
import datetime
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from . import ops
from .config import FitConfig
from .data import num_batches
from .history import History
from .trainer import fit

PROFILES = ("smoke", "default", "paper")


def _is_repository(folder: Path) -> bool:
    """The avil repository's root: the package and the notebooks side by side."""
    return (folder / "avil" / "__init__.py").is_file() and (folder / "notebooks").is_dir()


def find_root(start: Optional[Path] = None) -> Optional[Path]:
    """The avil repository that holds ``start`` (default: the current working
    directory), found by walking up to the folder with ``avil/__init__.py`` and
    ``notebooks/``; else the repository this package was imported from (an
    editable install); else None (a regular install, run outside a checkout)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if _is_repository(folder):
            return folder
    package_parent = Path(__file__).resolve().parents[1]
    return package_parent if _is_repository(package_parent) else None


def active_profile(profile: str) -> str:
    """The profile a notebook runs, from its ``PROFILE`` and ``AVIL_PROFILE``.

    The rule (also in the notebooks' parameters cells and the README):
    - ``PROFILE`` as committed, ``"default"``: ``AVIL_PROFILE`` from the
      environment, if set, selects the profile. That is how nbval, ``make
      test`` and ``make reproduce`` run the committed files unchanged.
    - any other ``PROFILE`` (injected with ``papermill -p PROFILE ...`` or
      edited) was chosen for this run and wins; an ``AVIL_PROFILE`` that
      disagrees is overridden with a warning naming both, never silently.
    So ``-p PROFILE default`` cannot override ``AVIL_PROFILE``: unset it instead.
    """
    env = os.environ.get("AVIL_PROFILE") or None
    chosen = profile if profile != "default" or env is None else env
    if env is not None and profile != "default" and env != profile:
        warnings.warn(f"PROFILE={profile!r} (injected or edited) overrides AVIL_PROFILE={env!r} from the "
                      "environment; unset AVIL_PROFILE to silence this.", stacklevel=2)
    if chosen not in PROFILES:
        source = "AVIL_PROFILE" if chosen is env else "the notebook's PROFILE"
        raise ValueError(f"profile {chosen!r} ({source}): must be one of {PROFILES}.")
    return chosen


def results_dir(notebook: str) -> Path:
    """``<AVIL_RESULTS_DIR>/<notebook>/`` if that variable is set; else
    ``results/<notebook>/`` of the repository that holds the current working
    directory (``find_root``); else ``./results/<notebook>/``."""
    if os.environ.get("AVIL_RESULTS_DIR"):
        base = Path(os.environ["AVIL_RESULTS_DIR"])
    else:
        root = find_root()
        base = (root if root else Path.cwd()) / "results"
    path = base / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def metrics_path(notebook: str, profile: str) -> Path:
    """``metrics.json`` for the default profile; ``metrics-<profile>.json`` for
    the others, so a smoke run never overwrites the committed results."""
    name = "metrics.json" if profile == "default" else f"metrics-{profile}.json"
    return results_dir(notebook) / name


def provenance() -> Dict[str, str]:
    """Commit, device, versions and date: what a reader needs to trust a number."""
    try:
        cwd = find_root() or Path.cwd()
    except OSError:  # no working directory (e.g. deleted): no git information, as when git fails
        cwd = None

    def git(*args):
        if cwd is None:
            return ""
        try:
            return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
                 f"{torch.get_num_threads()} torch threads)"
    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        # Code changes only: the executed notebooks and their results are outputs.
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                        ":!notebooks", ":!results")),
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "merge_backend": ops.backend(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


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
        only: CUDA cannot be used in a forked process. Workers show no progress
        bars (``config.progress`` is ignored there).
    progress: one line per finished run (label, seed, test metric, seconds).
    A run that raises, or whose process dies, is reported at once (label, seed
    and the error); the others go on, and a ``CompareError`` at the end carries
    every traceback and the finished runs' Histories.
    """
    global _RUNS
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r}: must be a positive integer (1 runs in this process).")
    if workers > 1 and any(torch.device(r.config.device).type != "cpu" for r in runs):
        raise ValueError(f"workers={workers} runs forked CPU processes, but a config's device is not the CPU. "
                         "Fix: workers=1 on a GPU.")
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


def mean_std(values: Sequence[float]):
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(histories: Dict[str, List[History]], baseline: Optional[str] = "single_task") -> Dict[str, dict]:
    """Per method: test and dev mean ± std over seeds, best epochs, final weights
    (mean), and, when ``baseline`` is among the methods, the paired difference
    of the test metric from it per seed (``vs_baseline``: mean, 95 % t-interval,
    wins; see ``paired_difference``), over the seeds both ran."""
    out = {}
    for method, runs in histories.items():
        test_mean, test_std = mean_std(h.test for h in runs)
        dev_mean, dev_std = mean_std(max(h.dev) for h in runs)
        names = runs[0].tasks
        out[method] = {
            "test_mean": test_mean, "test_std": test_std, "dev_mean": dev_mean, "dev_std": dev_std,
            "test": [h.test for h in runs], "best_dev": [max(h.dev) for h in runs],
            "best_epoch": [h.best_epoch for h in runs], "seeds": [h.seed for h in runs],
            "final_weights": {n: statistics.fmean(h.task_weights[-1][n] for h in runs) for n in names},
            "seconds": sum(sum(h.epoch_seconds) for h in runs),
        }
        if baseline in histories and method != baseline:
            reference = {h.seed: h.test for h in histories[baseline]}
            paired = [(h.test, reference[h.seed]) for h in runs if h.seed in reference]
            if paired:
                out[method]["baseline"] = baseline
                out[method]["vs_baseline"] = paired_difference(*zip(*paired)).to_dict()
    return out


def table(summary: Dict[str, dict], scale: float = 100.0, unit: str = "%"):
    """A pandas table of a ``summarize`` result: one row per method, with the
    paired difference from the baseline (mean ± 95 % CI half-width in points,
    then wins/seeds) and whether its interval excludes 0 ("inside CI" is
    never a win)."""
    import pandas as pd

    paired_columns = any("vs_baseline" in s for s in summary.values())
    if paired_columns:
        baseline = next(s["baseline"] for s in summary.values() if "baseline" in s)
    rows = []
    for method, s in summary.items():
        row = {
            "method": method,
            f"test {unit} (mean ± std)": f"{scale * s['test_mean']:.2f} ± {scale * s['test_std']:.2f}",
        }
        if paired_columns:
            paired = s.get("vs_baseline")
            diff = PairedDifference.from_dict(paired) if paired else None
            row[f"Δ vs {baseline} (95 % CI, wins)"] = diff.format(scale) if diff else "—"
            row["verdict"] = diff.verdict if diff else "—"
        row.update({
            f"best dev {unit}": f"{scale * s['dev_mean']:.2f} ± {scale * s['dev_std']:.2f}",
            "best epoch": ", ".join(str(e) for e in s["best_epoch"]),
            "seeds": len(s["test"]),
            **{f"w[{n}]": round(w, 2) for n, w in s["final_weights"].items()},
        })
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """a − b paired per seed: the mean, a two-sided t-interval and wins.

    half_width is ``inf`` with one seed (no interval without a spread); a
    difference is established only where the interval excludes 0
    (``verdict``), never by its mean alone.
    """

    mean: float
    half_width: float
    wins: int  # seeds where a > b (strictly)
    seeds: int
    differences: Tuple[float, ...]  # a_i − b_i per seed
    confidence: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def verdict(self) -> str:
        """"higher" or "lower" where the interval excludes 0, else "inside CI"."""
        return "higher" if self.low > 0 else "lower" if self.high < 0 else "inside CI"

    def format(self, scale: float = 100.0) -> str:
        """E.g. ``+1.81 ± 1.61 (3/3)``: mean ± half-width in ``scale`` units, wins/seeds."""
        width = f"{scale * self.half_width:.2f}" if math.isfinite(self.half_width) else "∞"
        return f"{scale * self.mean:+.2f} ± {width} ({self.wins}/{self.seeds})"

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["differences"] = list(self.differences)
        data["half_width"] = self.half_width if math.isfinite(self.half_width) else None  # JSON has no inf
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PairedDifference":
        return cls(**{**data, "differences": tuple(data["differences"]),
                      "half_width": math.inf if data["half_width"] is None else data["half_width"]})


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    """The paired difference a − b over seeds (``a[i]`` and ``b[i]`` from the
    same seed): mean, the half-width of its ``confidence`` t-interval
    (``t_{n−1} · sd / √n``, scipy.stats.t), and wins/seeds."""
    from scipy import stats

    a, b = list(a), list(b)
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_difference needs the same number (≥ 1) of values per side, one per seed; "
                         f"got {len(a)} and {len(b)}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: must be in (0, 1), e.g. 0.95.")
    diffs = tuple(float(x) - float(y) for x, y in zip(a, b))
    n = len(diffs)
    half = math.inf
    if n > 1:
        half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * statistics.stdev(diffs) / math.sqrt(n)
    return PairedDifference(statistics.fmean(diffs), half, sum(d > 0 for d in diffs), n, diffs, confidence)


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


def effects_table(effects: Dict[str, AuxiliaryEffect], scale: float = 100.0, unit: str = "%"):
    """A pandas table of ``auxiliary_effects``: one row per auxiliary, the mean
    test metric with and without it, the paired difference (mean ± 95 % CI,
    wins/seeds) and whether the interval excludes 0."""
    import pandas as pd

    verdicts = {"higher": "helpful", "lower": "harmful", "inside CI": "no effect established"}
    rows = []
    for aux, effect in effects.items():
        d = effect.difference
        rows.append({
            "auxiliary": aux,
            f"{effect.baseline} test {unit}": round(scale * statistics.fmean(h.test for h in effect.alone), 2),
            f"{effect.method} with it, test {unit}": round(scale * statistics.fmean(h.test for h in effect.joint), 2),
            f"effect ({'points' if unit == '%' else unit}, mean ± 95 % CI (wins/seeds))": d.format(scale),
            "verdict": verdicts[d.verdict],
        })
    return pd.DataFrame(rows).set_index("auxiliary")


def _band(ax, series: torch.Tensor, **style):
    """Plot the mean over seeds of ``series`` (seeds, epochs) per epoch, with a
    band from its min to its max in the line's colour; return the line."""
    epochs = range(1, series.shape[1] + 1)
    line, = ax.plot(epochs, series.mean(0), marker=".", **style)
    ax.fill_between(epochs, series.min(0).values, series.max(0).values, alpha=0.15, color=line.get_color())
    return line


def plot_weights(histories: Dict[str, List[History]], title: str = ""):
    """Task weights per epoch for every method that has them (mean over seeds,
    band = min..max), and αVIL's α per epoch. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [(m, "task_weights") for m, runs in histories.items()
              # weights that differ from each other only by float noise are not worth a panel
              if any(len({round(w, 6) for w in ws.values()}) > 1 for h in runs for ws in h.task_weights)]
    panels += [(m, "alphas") for m, runs in histories.items() if runs[0].alphas]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (method, field) in zip(axes[0], panels):
        runs = histories[method]
        for name in runs[0].tasks:
            series = torch.tensor([[epoch[name] for epoch in getattr(h, field)] for h in runs])  # (seeds, E)
            _band(ax, series, label=name)
        ax.axhline(1.0, color="grey", lw=0.6, ls=":")
        ax.set_title(f"{method}: {'α' if field == 'alphas' else 'task weight'}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][-1].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_alpha_step(histories: Dict[str, List[History]], title: str = ""):
    """How well each αVIL run's α-step was solved, per epoch (mean over seeds,
    band = min..max): the target's dev loss at α_init and at the chosen α,
    the solver's evaluations, the seconds it took, and how many α ended on a
    trust-region bound. Returns the figure (None if no run has an α-step)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    runs_by = {m: runs for m, runs in histories.items() if runs and runs[0].alpha_step}
    if not runs_by:
        return None
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    panels = (
        (axes[0], "dev loss (solid: chosen α, dotted: α_init)", None),
        (axes[1], "evaluations", lambda step, seconds: step["evaluations"]),
        (axes[2], "seconds", lambda step, seconds: seconds),
        (axes[3], "α on a bound", lambda step, seconds: len(step["on_bound"])),
    )
    for method, runs in runs_by.items():
        final = torch.tensor([[s["loss_final"] for s in h.alpha_step] for h in runs])  # (seeds, epochs)
        initial = torch.tensor([[s["loss_init"] for s in h.alpha_step] for h in runs])  # (seeds, epochs)
        line = _band(axes[0], final, label=method)
        axes[0].plot(range(1, initial.shape[1] + 1), initial.mean(0), ls=":", color=line.get_color())
        for ax, _, value in panels[1:]:
            series = torch.tensor([[float(value(s, sec)) for s, sec in zip(h.alpha_step, h.alpha_step_seconds)]
                                   for h in runs])  # (seeds, epochs)
            _band(ax, series, color=line.get_color())
    for ax, name, _ in panels:
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def suite_table(tasks):
    """A pandas table of a suite: per task, its head's outputs (where the head
    has ``out_features``) and its train / dev / test sizes."""
    import pandas as pd

    return pd.DataFrame([{"task": t.name, "outputs": getattr(t.head, "out_features", None), "train": len(t.train),
                          "dev": len(t.dev), "test": len(t.test)} for t in tasks]).set_index("task")


def plot_dev(histories: Dict[str, List[History]], title: str = "", scale: float = 100.0, unit: str = "%"):
    """The target's dev metric per epoch, mean over seeds, one line per label. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for label, runs in histories.items():
        dev = torch.tensor([h.dev for h in runs])  # (seeds, epochs)
        ax.plot(range(1, dev.shape[1] + 1), scale * dev.mean(0), marker=".", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(unit)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title or "dev metric (mean over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def final_weights_table(histories: Dict[str, List[History]], scale: float = 100.0, unit: str = "%"):
    """One row per (label, seed): every task's final weight and the test metric."""
    import pandas as pd

    rows = [{"rule": label, "seed": h.seed, **{k: round(w, 2) for k, w in h.task_weights[-1].items()},
             f"test {unit}": round(scale * h.test, 2)} for label, runs in histories.items() for h in runs]
    return pd.DataFrame(rows).set_index(["rule", "seed"])


def ranked_below(histories: Dict[str, List[History]], task: str, others: Sequence[str],
                 strict: bool = True) -> Dict[str, List[bool]]:
    """Per label, per seed: does ``task`` end with a lower weight than every
    task in ``others``? (E.g. a harmful control below the helpful auxiliaries.)
    strict=False also counts a tie (e.g. two tasks on the weight floor) as below."""
    below = (lambda a, b: a < b) if strict else (lambda a, b: a <= b)
    return {label: [all(below(h.task_weights[-1][task], h.task_weights[-1][o]) for o in others) for h in runs]
            for label, runs in histories.items()}


def _alpha_step_runs(histories: Dict[str, List[History]]):
    """(label, History) of every run with an α-step (αVIL's), in order."""
    return [(label, h) for label, runs in histories.items() for h in runs if h.alpha_step]


def alpha_step_records(histories: Dict[str, List[History]]) -> List[dict]:
    """What every αVIL run's α-step did, one flat record per (label, seed,
    epoch), JSON-able (for a metrics file) and the rows of ``alpha_step_table``:
    ``rule`` (the label), ``seed``, ``epoch`` (1-based), ``α[task]`` (the
    chosen α) and ``w[task]`` (the task weight after the epoch) for every
    task, the target's dev loss on the α-step's dev subset at α_init
    (``loss_init``) and at the chosen α (``loss_final``), the solver's
    ``iterations`` and ``evaluations``, ``on_bound`` (the tasks whose α ended
    on a bound of the trust region), ``converged`` and ``seconds`` (the
    α-step's wall time). Runs without an α-step (other methods) are left out."""
    rows = []
    for label, h in _alpha_step_runs(histories):
        for epoch, (step, alphas, weights, seconds) in enumerate(
                zip(h.alpha_step, h.alphas, h.task_weights, h.alpha_step_seconds), 1):
            rows.append({"rule": label, "seed": h.seed, "epoch": epoch,
                         **{f"α[{name}]": alphas[name] for name in h.tasks},
                         **{f"w[{name}]": weights[name] for name in h.tasks},
                         **{key: step[key] for key in ("loss_init", "loss_final", "iterations", "evaluations",
                                                       "on_bound", "converged")},
                         "seconds": seconds})
    return rows


def alpha_step_table(histories: Dict[str, List[History]], digits: int = 3):
    """A pandas table of ``alpha_step_records``, indexed by (rule, seed,
    epoch): per epoch of every αVIL run, α and the weight of each task, the
    dev loss before (at α_init) and after the α-step, the solver's work, the
    α on a bound and whether it converged."""
    import pandas as pd

    frame = pd.DataFrame(alpha_step_records(histories)).set_index(["rule", "seed", "epoch"])
    frame["on_bound"] = [", ".join(names) or "—" for names in frame["on_bound"]]
    frame = frame.rename(columns={"loss_init": "dev loss at α_init", "loss_final": "dev loss at α",
                                  "on_bound": "α on a bound", "seconds": "α-step s"})
    return frame.round(digits)


def ablation_records(histories: Dict[str, List[History]]) -> List[dict]:
    """The per-delta ablation of every αVIL run, one record per (label, seed,
    epoch): ``rule``, ``seed``, ``epoch`` and, per task, the target's dev loss
    at the chosen α with that task's update dropped (its α set to 0) minus the
    dev loss at the chosen α (``History.alpha_step``'s ``loss_without`` minus
    ``loss_final``, on the α-step's dev subset). Positive: the merged model
    leans on that task's update (dropping it raises the dev loss); negative:
    the target would be better off without it; 0: its α is 0.
    Raises ValueError naming the run if it was made without
    ``FitConfig(alpha_ablation=True)``."""
    rows = []
    for label, h in _alpha_step_runs(histories):
        for epoch, step in enumerate(h.alpha_step, 1):
            if step.get("loss_without") is None:
                raise ValueError(f"{label} seed {h.seed}, epoch {epoch}: no per-delta ablation recorded "
                                 "(History.alpha_step has no 'loss_without'). Fix: run it with "
                                 "FitConfig(alpha_ablation=True).")
            rows.append({"rule": label, "seed": h.seed, "epoch": epoch,
                         **{name: step["loss_without"][name] - step["loss_final"] for name in h.tasks}})
    return rows


def ablation_table(histories: Dict[str, List[History]], digits: int = 4):
    """A pandas table of ``ablation_records``, indexed by (rule, seed, epoch),
    one column per task: the rise of the target's dev loss when that task's
    update is dropped from the merge at the chosen α."""
    import pandas as pd

    return pd.DataFrame(ablation_records(histories)).set_index(["rule", "seed", "epoch"]).round(digits)


def alpha_step_cost(histories: Dict[str, List[History]]) -> Dict[str, dict]:
    """Per label with an α-step: its seconds against the whole epoch's, over
    all runs and epochs: ``runs``, ``epochs``, ``alpha_step_seconds`` and
    ``epoch_seconds`` (means per epoch) and ``share`` (total α-step seconds
    over total epoch seconds, in [0, 1]). An epoch's seconds hold its task
    passes, the α-step, the merge, the dev and test evaluation, and (with
    ``alpha_ablation``) the per-delta ablation; the α-step's hold the solver's
    dev-loss evaluations and α-gradients only."""
    out = {}
    for label, runs in histories.items():
        runs = [h for h in runs if h.alpha_step]
        if not runs:
            continue
        step = [s for h in runs for s in h.alpha_step_seconds]
        epoch = [s for h in runs for s in h.epoch_seconds]
        out[label] = {"runs": len(runs), "epochs": len(epoch), "alpha_step_seconds": statistics.fmean(step),
                      "epoch_seconds": statistics.fmean(epoch),
                      "share": sum(step) / sum(epoch) if sum(epoch) > 0 else math.nan}
    return out


def plot_final_weights(histories: Dict[str, List[History]], colors: Optional[Dict[str, str]] = None,
                       title: str = ""):
    """Per label, two panels: the final task weights (bars: mean ± std over
    seeds, dots: seeds) and the weights per epoch (mean over seeds). ``colors``
    maps task names to matplotlib colours (grey otherwise). Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    colors = colors or {}
    fig, axes = plt.subplots(2, len(histories), figsize=(5 * len(histories), 6.6), squeeze=False)
    for (ax_bar, ax_line), (label, runs) in zip(axes.T, histories.items()):
        names = runs[0].tasks
        palette = [colors.get(n, "tab:grey") for n in names]
        final = torch.tensor([[h.task_weights[-1][n] for n in names] for h in runs])  # (seeds, tasks)
        ax_bar.bar(names, final.mean(0), yerr=final.std(0) if len(runs) > 1 else None, color=palette, capsize=3)
        ax_bar.scatter([i for i in range(len(names)) for _ in runs], final.T.flatten(), color="k", s=8, zorder=3)
        ax_bar.set_title(f"{label}: final weights (dots: seeds)", fontsize=9)
        ax_bar.tick_params(axis="x", labelsize=7)
        per_epoch = torch.tensor([[[e[n] for n in names] for e in h.task_weights] for h in runs]).mean(0)  # (E, tasks)
        for j, (name, color) in enumerate(zip(names, palette)):
            ax_line.plot(range(1, per_epoch.shape[0] + 1), per_epoch[:, j], marker=".", color=color, label=name)
        ax_line.set_title(f"{label}: weights per epoch (mean over seeds)", fontsize=9)
        ax_line.set_xlabel("epoch")
        ax_line.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_line.legend(fontsize=7)
        for ax in (ax_bar, ax_line):
            ax.axhline(0.0, color="grey", lw=0.6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_metrics(notebook: str, profile: str, payload: dict) -> Path:
    """Write ``payload`` (plus profile and provenance) to the notebook's metrics file.

    Atomic (``avil.io``): a failed write (full disk, kill, a payload that is
    not JSON) leaves the previous metrics file intact. The directory is
    checked writable first, with an error naming it and the fix.
    """
    return _write_metrics(notebook, profile, payload)[0]


def _write_metrics(notebook: str, profile: str, payload: dict) -> Tuple[Path, dict]:
    """``write_metrics``, returning the file's path and the data written to it."""
    from .io import check_writable, write_text

    path = metrics_path(notebook, profile)
    check_writable(path.parent, "the results directory (AVIL_RESULTS_DIR)")
    data = {"notebook": notebook, "profile": profile, "provenance": provenance(), **payload}
    write_text(path, json.dumps(data, indent=1))
    return path, data


class Stopwatch:
    """Wall time of a notebook, for its provenance cell."""

    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def jsonable(value):
    """``value`` with every History (or other object with ``to_dict``, such as
    FitConfig) replaced by its dict, through dicts, lists and tuples."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def finish(notebook: str, profile: str, payload: dict, clock: Stopwatch):
    """A notebook's closing cell: write ``payload`` (Histories and configs may
    be left as objects) and the wall time to its metrics file (``write_metrics``),
    and return the provenance table the cell shows: commit, device, versions,
    wall time and where the metrics went."""
    import pandas as pd

    seconds = clock.seconds
    path, data = _write_metrics(notebook, profile, {**jsonable(payload), "wall_seconds": seconds})
    info = dict(data["provenance"])  # what was written (its values are JSON's own str and bool)
    info["wall time"] = f"{seconds:.0f} s"
    root = find_root()
    info["metrics"] = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
    return pd.Series(info, name="provenance").to_frame()


# -- make reproduce ---------------------------------------------------------

def notebooks() -> List[Path]:
    """The repository's notebooks, in order (``NN_name.ipynb``)."""
    root = find_root()
    if root is None:
        raise FileNotFoundError(f"no avil repository (a folder with avil/ and notebooks/) holds {Path.cwd()}. "
                                "Fix: run from a checkout of the repository.")
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def run_notebook(path: Path, profile: str, output: Path, parameters: Optional[dict] = None) -> None:
    import papermill

    # The default profile injects nothing, so a refreshed notebook carries no
    # "injected-parameters" cell; AVIL_PROFILE in the environment selects the profile.
    injected = {**({} if profile == "default" else {"PROFILE": profile}), **(parameters or {})}
    papermill.execute_notebook(str(path), str(output), parameters=injected,
                               cwd=str(path.parent), kernel_name="python3", progress_bar=False)


def print_summary(profile: str) -> None:
    """One line per notebook, target (or suite) and method (or variant) from the
    metrics files: the test metric, and its paired difference from single_task."""
    print(f"\n{'notebook':<16} {'target':<20} {'method':<48} {'test (mean ± std)':>17}  "
          f"{'Δ vs single_task (95 % CI, wins)':<30}")
    for nb in notebooks():
        path = metrics_path(nb.stem, profile)
        if not path.exists():
            print(f"{nb.stem:<16} (no {path.name})")
            continue
        data = json.loads(path.read_text())
        for target, methods in data.get("results", {}).items():
            for method, s in methods.items():
                tests = s["test"]
                mean, std = mean_std(tests)
                paired = s.get("vs_baseline") or s.get("difference")  # a compare summary, or 03's ablation
                diff = PairedDifference.from_dict(paired).format() if paired else ""
                print(f"{nb.stem:<16} {target:<20} {method:<48} {100 * mean:>8.2f} ± {100 * std:<6.2f}  {diff}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Execute every notebook with papermill and summarise.")
    parser.add_argument("--profile", default="default", choices=PROFILES)
    parser.add_argument("--inplace", action="store_true",
                        help="overwrite notebooks/*.ipynb with the executed copies (the committed outputs)")
    parser.add_argument("--only", nargs="*", default=None, help="notebook names (stems) to run")
    args = parser.parse_args(argv)
    os.environ["AVIL_PROFILE"] = args.profile
    for nb in notebooks():
        if args.only and nb.stem not in args.only:
            continue
        output = nb if args.inplace else results_dir(nb.stem) / nb.name
        start = time.perf_counter()
        print(f"{nb.name}: running ({args.profile}) -> {output}", flush=True)
        run_notebook(nb, args.profile, output)
        print(f"{nb.name}: done in {time.perf_counter() - start:.0f} s", flush=True)
    print_summary(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
