"""Where a notebook's results go and what they carry: the profiles and the
rule that picks one, the repository and its results folder, provenance, the
metrics file, and a notebook's closing cell (``finish``)."""
import datetime
import json
import os
import platform
import subprocess
import time
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from .. import ops
from ..io import check_writable, write_text


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
    package_parent = Path(__file__).resolve().parents[2]  # <root>/avil/reproduce/results.py
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


def write_metrics(notebook: str, profile: str, payload: dict) -> Path:
    """Write ``payload`` (plus profile and provenance) to the notebook's metrics file.

    Atomic (``avil.io``): a failed write (full disk, kill, a payload that is
    not JSON) leaves the previous metrics file intact. The directory is
    checked writable first, with an error naming it and the fix.
    """
    return _write_metrics(notebook, profile, payload)[0]


def _write_metrics(notebook: str, profile: str, payload: dict) -> Tuple[Path, dict]:
    """``write_metrics``, returning the file's path and the data written to it."""
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
