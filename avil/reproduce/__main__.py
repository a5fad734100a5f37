"""``make reproduce``: execute every notebook with papermill, then print one
summary line per notebook, target and method from the metrics files.

    python -m avil.reproduce --profile default            # into results/<notebook>/
    python -m avil.reproduce --profile default --inplace  # refresh the committed notebooks
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from .results import PROFILES, find_root, metrics_path, results_dir
from .stats import PairedDifference


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
    metrics files, whose results are ``summarize``'s shape: the test metric
    (mean ± std over seeds) and its paired difference from the baseline
    (``vs_baseline``). A file of another shape (one written before its
    notebook's results took that shape) gets one line saying so."""
    print(f"\n{'notebook':<16} {'target':<20} {'method':<48} {'test (mean ± std)':>17}  "
          f"{'Δ vs single_task (95 % CI, wins)':<30}")
    for nb in notebooks():
        path = metrics_path(nb.stem, profile)
        if not path.exists():
            print(f"{nb.stem:<16} (no {path.name})")
            continue
        results = json.loads(path.read_text()).get("results", {})
        if not _summarize_shape(results):
            print(f"{nb.stem:<16} ({path.name}: results of another shape; rerun the notebook to refresh it)")
            continue
        for target, methods in results.items():
            for method, s in methods.items():
                paired = s.get("vs_baseline")
                diff = PairedDifference.from_dict(paired).format() if paired else ""
                print(f"{nb.stem:<16} {target:<20} {method:<48} {100 * s['test_mean']:>8.2f} ± "
                      f"{100 * s['test_std']:<6.2f}  {diff}")


def _summarize_shape(results) -> bool:
    """``{target: {method: summarize's entry}}``: every entry has the test's mean and std."""
    return isinstance(results, dict) and all(
        isinstance(methods, dict) and all(isinstance(s, dict) and {"test_mean", "test_std"} <= s.keys()
                                          for s in methods.values()) for methods in results.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avil.reproduce",
                                     description="Execute every notebook with papermill and summarise.")
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
