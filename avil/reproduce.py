"""What the notebooks share: profiles, the method-by-seed comparison loop,
summary tables, weight plots, provenance and results files; and the
``make reproduce`` entry point, which executes every notebook with papermill.

    python -m avil.reproduce --profile default            # into results/<notebook>/
    python -m avil.reproduce --profile default --inplace  # refresh the committed notebooks
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from . import ops
from .config import FitConfig
from .history import History
from .trainer import fit

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PROFILES = ("smoke", "default", "paper")


def active_profile(profile: str) -> str:
    """The notebook's PROFILE, unless ``AVIL_PROFILE`` is set in the environment
    (so nbval and CI run the same files in "smoke" mode)."""
    profile = os.environ.get("AVIL_PROFILE", profile)
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r}: must be one of {PROFILES} (notebook PROFILE or AVIL_PROFILE).")
    return profile


def results_dir(notebook: str) -> Path:
    """``results/<notebook>/`` of the repository, or under ``AVIL_RESULTS_DIR``."""
    base = Path(os.environ.get("AVIL_RESULTS_DIR", ROOT / "results"))
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
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
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


def compare(make_run: Callable[[int], tuple], target: str, methods: Sequence[str], seeds: Sequence[int],
            config: FitConfig, progress: bool = True) -> Dict[str, List[History]]:
    """Fit every method under every seed: ``{method: [History per seed]}``.

    ``make_run(seed) -> (encoder, tasks)`` builds a fresh encoder and tasks, so
    each run starts from the same initialisation for a given seed.
    """
    runs = [(m, s) for m in methods for s in seeds]
    out: Dict[str, List[History]] = {m: [] for m in methods}
    for i, (method, seed) in enumerate(runs, 1):
        start = time.perf_counter()
        encoder, tasks = make_run(seed)
        cfg = FitConfig(**{**config.to_dict(), "seed": seed})
        history = fit(encoder, tasks, target, method, cfg)
        out[method].append(history)
        if progress:
            # One line per run: readable in a notebook's saved output and in logs.
            print(f"[{i:>{len(str(len(runs)))}}/{len(runs)}] {method:<12} seed {seed}: "
                  f"test {history.test:.4f} (best dev epoch {history.best_epoch}), "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return out


def mean_std(values: Sequence[float]):
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(histories: Dict[str, List[History]]) -> Dict[str, dict]:
    """Per method: test and dev mean ± std over seeds, best epochs, final weights (mean)."""
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
    return out


def table(summary: Dict[str, dict], scale: float = 100.0, unit: str = "%"):
    """A pandas table of a ``summarize`` result: one row per method."""
    import pandas as pd

    rows = []
    for method, s in summary.items():
        rows.append({
            "method": method,
            f"test {unit} (mean ± std)": f"{scale * s['test_mean']:.2f} ± {scale * s['test_std']:.2f}",
            f"best dev {unit}": f"{scale * s['dev_mean']:.2f} ± {scale * s['dev_std']:.2f}",
            "best epoch": ", ".join(str(e) for e in s["best_epoch"]),
            "seeds": len(s["test"]),
            **{f"w[{n}]": round(w, 2) for n, w in s["final_weights"].items()},
        })
    return pd.DataFrame(rows).set_index("method")


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
            epochs = range(1, series.shape[1] + 1)
            line, = ax.plot(epochs, series.mean(0), label=name, marker=".")
            ax.fill_between(epochs, series.min(0).values, series.max(0).values, alpha=0.15,
                            color=line.get_color())
        ax.axhline(1.0, color="grey", lw=0.6, ls=":")
        ax.set_title(f"{method}: {'α' if field == 'alphas' else 'task weight'}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][-1].legend(fontsize=8, loc="best")
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
    from .io import check_writable, write_text

    path = metrics_path(notebook, profile)
    check_writable(path.parent, "the results directory (AVIL_RESULTS_DIR)")
    data = {"notebook": notebook, "profile": profile, "provenance": provenance(), **payload}
    write_text(path, json.dumps(data, indent=1))
    return path


class Stopwatch:
    """Wall time of a notebook, for its provenance cell."""

    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


# -- make reproduce ---------------------------------------------------------

def notebooks() -> List[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(path: Path, profile: str, output: Path, parameters: Optional[dict] = None) -> None:
    import papermill

    # The default profile injects nothing, so a refreshed notebook carries no
    # "injected-parameters" cell; AVIL_PROFILE in the environment selects the profile.
    injected = {**({} if profile == "default" else {"PROFILE": profile}), **(parameters or {})}
    papermill.execute_notebook(str(path), str(output), parameters=injected,
                               cwd=str(path.parent), kernel_name="python3", progress_bar=False)


def print_summary(profile: str) -> None:
    """One line per notebook, target and method from the metrics files."""
    print(f"\n{'notebook':<16} {'target':<12} {'method':<12} {'test (mean ± std)':>20} {'seeds':>5}")
    for nb in notebooks():
        path = metrics_path(nb.stem, profile)
        if not path.exists():
            print(f"{nb.stem:<16} (no {path.name})")
            continue
        data = json.loads(path.read_text())
        for target, methods in data.get("results", {}).items():
            for method, s in methods.items():
                print(f"{nb.stem:<16} {target:<12} {method:<12} "
                      f"{100 * s['test_mean']:>11.2f} ± {100 * s['test_std']:<6.2f} {len(s['test']):>5}")


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
