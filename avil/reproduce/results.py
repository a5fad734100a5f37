"""Where a notebook's results go and what they carry: the profiles and the
rule that picks one, the repository and its results folder, the rule that
picks a run's results file, provenance, and a notebook's first and last calls
(``start`` and ``finish``).

Only ``make reproduce`` writes a notebook's committed ``metrics.json``; every
other run writes ``runs/<profile>-<hash>.json`` beside it (``results_path``).
"""
import ast
import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .. import ops
from ..io import check_writable, write_text


PROFILES = ("smoke", "default", "paper")
# Set (to "1") by ``python -m avil.reproduce`` (``make reproduce``) for the
# notebook kernels it starts: the one way a run may write metrics.json.
MAKE_REPRODUCE_ENV = "AVIL_MAKE_REPRODUCE"
# The keys of a claim's verdict (``claims.Verdict.to_dict()``), as ``finish`` stores them.
VERDICT_KEYS = ("claim", "suite", "verdict", "estimate", "ci_low", "ci_high", "seeds", "wins", "detail",
                "statement")


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


def metrics_path(notebook: str) -> Path:
    """``results/<notebook>/metrics.json``: the committed default run, which
    only ``make reproduce`` writes (``results_path`` says when)."""
    return results_dir(notebook) / "metrics.json"


def runs_path(notebook: str, profile: str, parameters: Dict[str, Any]) -> Path:
    """``results/<notebook>/runs/<profile>-<hash>.json``: the file of any run
    but ``make reproduce``'s. The hash (8 hex digits of a SHA-256) is of the
    profile and the parameters as JSON with sorted keys, so the same profile
    and parameters always name the same file, and other ones another file."""
    key = json.dumps({"profile": profile, "parameters": parameters}, sort_keys=True)
    return results_dir(notebook) / "runs" / f"{profile}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.json"


def committed_parameters(notebook: str) -> Optional[Dict[str, Any]]:
    """``{name: value}`` of the cell tagged ``parameters`` in the repository's
    ``notebooks/<notebook>.ipynb``, as committed (``PROFILE`` included), read
    with ``ast.literal_eval``; None where there is no such notebook (outside a
    checkout, or a notebook of one's own)."""
    root = find_root()
    path = root / "notebooks" / f"{notebook}.ipynb" if root else None
    if path is None or not path.is_file():
        return None
    cells = [c for c in json.loads(path.read_text())["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path}: {len(cells)} cells tagged 'parameters'. Fix: tag exactly one cell 'parameters'.")
    source = cells[0]["source"]
    source = "".join(source) if isinstance(source, list) else source
    values = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{path}: the parameters cell holds {ast.get_source_segment(source, node)!r}. "
                             "Fix: only assignments of literals, NAME = value, one per line.")
        try:
            values[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError as err:
            raise ValueError(f"{path}: parameter {node.targets[0].id} is not a literal ({err}). Fix: assign a "
                             "literal (a number, string, None, or a list or dict of them).") from None
    return values


def _as_json(value):
    """``value`` as JSON reads it back (a tuple becomes a list), so parameters compare as the file stores them."""
    return json.loads(json.dumps(value))


def _decide(notebook: str, profile: str, parameters: Dict[str, Any], by_make_reproduce: bool) -> Tuple[Path, str]:
    """(the run's results file, why that one): ``metrics.json`` if and only if
    ``make reproduce`` runs it, at the default profile, with the committed
    parameters; else ``runs_path``."""
    committed = committed_parameters(notebook)
    why = []
    if not by_make_reproduce:
        why.append(f"not run by make reproduce ({MAKE_REPRODUCE_ENV} unset)")
    if profile != "default":
        why.append(f"profile {profile}")
    if committed is None:
        why.append(f"no notebooks/{notebook}.ipynb to compare its parameters with")
    else:
        committed = _as_json({name: v for name, v in committed.items() if name != "PROFILE"})
        given = _as_json(parameters)

        def shown(values, name):
            return repr(values[name]) if name in values else "not given"

        why += [f"{name}={shown(given, name)}, committed {shown(committed, name)}"
                for name in sorted(committed.keys() | given.keys()) if given.get(name, ...) != committed.get(name, ...)]
    if why:
        return runs_path(notebook, profile, parameters), "; ".join(why)
    return metrics_path(notebook), ("this is the committed results file, which only make reproduce writes, run at the "
                                    "default profile with the parameters committed in the notebook")


def results_path(notebook: str, profile: str, parameters: Dict[str, Any]) -> Path:
    """The file a run of ``notebook`` writes, given its active ``profile`` and
    its parameters-cell values (``PROFILE`` aside): ``metrics_path`` when
    ``make reproduce`` runs it (``MAKE_REPRODUCE_ENV`` set), the profile is
    ``default`` and the parameters equal those committed in
    ``notebooks/<notebook>.ipynb``; ``runs_path`` for every other run."""
    return _decide(notebook, profile, parameters, bool(os.environ.get(MAKE_REPRODUCE_ENV)))[0]


def make_reproduce_path(notebook: str, profile: str) -> Path:
    """The file ``python -m avil.reproduce --profile <profile>`` writes for
    ``notebook`` (it injects no parameters): ``metrics.json`` for ``default``,
    the runs file of the committed parameters for the other profiles."""
    committed = committed_parameters(notebook) or {}
    return _decide(notebook, profile, {k: v for k, v in committed.items() if k != "PROFILE"}, True)[0]


def _pinned_packages() -> List[str]:
    """torch and every package pinned in the repository's requirements.txt and
    requirements-data.txt (outside a checkout: the avil distribution's requirements)."""
    root = find_root()
    if root is not None and (root / "requirements.txt").is_file():
        lines = [line for name in ("requirements.txt", "requirements-data.txt") if (root / name).is_file()
                 for line in (root / name).read_text().splitlines()]
    else:
        try:
            lines = importlib.metadata.requires("avil") or []
        except importlib.metadata.PackageNotFoundError:
            lines = []
    names = [re.match(r"[A-Za-z0-9._-]+", line.strip()).group(0) for line in lines
             if line.strip() and not line.strip().startswith(("#", "-"))]
    return list(dict.fromkeys(["torch", *names]))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> Dict[str, Any]:
    """Commit, device, CPU, threads, versions and date: what a reader needs to
    trust a number (``finish`` adds the wall time)."""
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

    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        # Code changes only: the executed notebooks and their results are outputs.
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                        ":!notebooks", ":!results")),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "merge_backend": ops.backend(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in _pinned_packages()},
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


class Stopwatch:
    """Wall time of a notebook, for its provenance cell."""

    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def jsonable(value):
    """``value`` with every History (or other object with ``to_dict``, such as
    FitConfig or a claim's Verdict) replaced by its dict, through dicts, lists and tuples."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


@dataclasses.dataclass
class NotebookRun:
    """One run of a notebook, from ``start`` to ``finish``."""

    notebook: str
    profile: str  # the active one (``active_profile``)
    parameters: Dict[str, Any]  # the parameters cell's values, PROFILE aside
    path: Path  # the results file ``finish`` writes (``results_path``)
    clock: Stopwatch = dataclasses.field(default_factory=Stopwatch)


def _shown(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it."""
    root = find_root()
    return str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)


def start(notebook: str, PROFILE: str, **parameters) -> NotebookRun:  # noqa: N803 (the notebooks' own name)
    """A notebook's first call, with its parameters cell's values:
    ``run = reproduce.start("00_quickstart", PROFILE, SEEDS=SEEDS, EPOCHS=EPOCHS, ...)``.

    Applies ``active_profile`` (the notebook then uses ``run.profile``), starts
    the clock, decides where this run writes (``results_path``: only ``make
    reproduce`` at the default profile with the committed parameters writes
    ``metrics.json``; any other run ``runs/<profile>-<hash>.json``) and prints
    it with the reason. Every name of the committed parameters cell but
    ``PROFILE`` must be passed, and no other, so the decision cannot miss one.
    """
    profile = active_profile(PROFILE)
    committed = committed_parameters(notebook)
    if committed is not None:
        expected = [name for name in committed if name != "PROFILE"]
        unknown, missing = sorted(parameters.keys() - set(expected)), [n for n in expected if n not in parameters]
        if unknown or missing:
            raise ValueError(f"reproduce.start({notebook!r}, ...): passed {sorted(parameters)}, but the parameters "
                             f"cell of notebooks/{notebook}.ipynb holds {expected} besides PROFILE (not in it: "
                             f"{unknown}; not passed: {missing}). Fix: pass each of them as NAME=NAME.")
    for name, value in parameters.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"reproduce.start({notebook!r}, ...): parameter {name}={value!r} is not JSON "
                             f"({err}). Fix: parameters are literals (numbers, strings, None, lists and dicts of "
                             "them).") from None
    return _begin(notebook, profile, dict(parameters), Stopwatch())


def _begin(notebook: str, profile: str, parameters: Dict[str, Any], clock: Stopwatch) -> NotebookRun:
    """The run, its results file decided (``results_path``) and printed with the reason."""
    path, why = _decide(notebook, profile, parameters, bool(os.environ.get(MAKE_REPRODUCE_ENV)))
    print(f"results of this run go to {_shown(path)}: {why}." + (
        "" if path.name == "metrics.json" else " (Only make reproduce, at the default profile with the committed "
                                               "parameters, writes metrics.json.)"), flush=True)
    return NotebookRun(notebook, profile, parameters, path, clock)


RESERVED_KEYS = ("notebook", "profile", "parameters", "provenance", "verdicts")


def write_metrics(run: NotebookRun, payload: dict, verdicts: Optional[Sequence] = None) -> dict:
    """Write ``payload`` (Histories and configs may be left as objects), the
    run's notebook, profile and parameters, the provenance and, if given, the
    ``verdicts`` (``Verdict`` objects or their dicts, under "verdicts") to
    ``run.path``; return what was written.

    Atomic (``avil.io``): a failed write (full disk, kill, a payload that is
    not JSON) leaves the previous file intact. The directory is checked
    writable first, with an error naming it and the fix.
    """
    clash = [key for key in RESERVED_KEYS if key in payload]
    if clash:
        raise ValueError(f"{run.notebook}: the payload has keys {clash}, which finish writes itself. "
                         "Fix: rename them (and pass verdicts as finish(run, payload, verdicts=[...])).")
    data = {"notebook": run.notebook, "profile": run.profile, "parameters": run.parameters,
            "provenance": {**provenance(), "wall_seconds": run.clock.seconds}, **jsonable(payload)}
    if verdicts is not None:
        data["verdicts"] = [jsonable(v) for v in verdicts]
        for i, v in enumerate(data["verdicts"]):
            missing = [k for k in VERDICT_KEYS if k not in v] if isinstance(v, dict) else list(VERDICT_KEYS)
            if missing:
                raise ValueError(f"{run.notebook}: verdict {i} lacks {missing}. Fix: pass claims.Verdict objects "
                                 "(or their to_dict()).")
    check_writable(run.path.parent, "the results directory (AVIL_RESULTS_DIR)")
    write_text(run.path, json.dumps(data, indent=1))
    return data


def finish(run: NotebookRun, payload: dict, *, verdicts: Optional[Sequence] = None):
    """A notebook's closing cell: ``reproduce.finish(run, payload, verdicts=[...])``
    writes ``payload``, the wall time since ``start`` and the verdicts to the
    file ``start`` chose (``write_metrics``), and returns the provenance table
    the cell shows: commit, device, CPU, threads, versions, wall time and the
    results file."""
    import pandas as pd

    data = write_metrics(run, payload, verdicts)
    info = {k: v for k, v in data["provenance"].items() if k not in ("packages", "wall_seconds")}
    info["packages"] = ", ".join(f"{name} {version}" for name, version in data["provenance"]["packages"].items())
    info["wall time"] = f"{data['provenance']['wall_seconds']:.0f} s"
    info["results file"] = _shown(run.path)
    return pd.Series(info, name="provenance").to_frame()
