"""``make reproduce``: execute every notebook with papermill, then print one
summary line per notebook, target and method from the results files; and the
README's ``## Results`` section, generated from the committed verdicts.

    python -m avil.reproduce --profile default            # into results/<notebook>/metrics.json
    python -m avil.reproduce --profile default --inplace  # and refresh the committed notebooks
    python -m avil.reproduce --summary                    # print the README's Results section
    python -m avil.reproduce --summary --write            # and rewrite it in README.md

It sets ``AVIL_MAKE_REPRODUCE=1`` for the kernels it starts: only such a run,
at the default profile with the committed parameters, writes a notebook's
``metrics.json`` (``results.results_path``).
"""
import argparse
import contextlib
import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator, List, Optional

from .results import MAKE_REPRODUCE_ENV, PROFILES, find_root, make_reproduce_path, results_dir
from . import prose
from .claims import Verdict
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
    files ``make reproduce`` writes at ``profile`` (``make_reproduce_path``:
    ``metrics.json`` for ``default``), whose results are ``summarize``'s
    shape: the test metric (mean ± std over seeds) and its paired difference
    from the baseline (``vs_baseline``). A file of another shape (one written before its
    notebook's results took that shape) gets one line saying so."""
    print(f"\n{'notebook':<16} {'target':<20} {'method':<48} {'test (mean ± std)':>17}  "
          f"{'Δ vs single_task (95 % CI, wins)':<30}")
    for nb in notebooks():
        path = make_reproduce_path(nb.stem, profile)
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


RESULTS_HEADING = "## Results"
COLUMNS = ("claim", "suite", "notebook", "verdict", "estimate", "95 % CI", "seeds", "wins")


def _cell(value) -> str:
    """A table cell: a number to 3 significant digits, a list by its length
    (e.g. the seeds themselves), nothing as "—", no bare ``|``."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, list):
        return str(len(value))
    return str(value).replace("|", "\\|").replace("\n", " ")


def _wrap(text: str) -> str:
    """A paragraph wrapped as the README's own are (80 columns)."""
    return textwrap.fill(text, width=80, break_long_words=False, break_on_hyphens=False)


def results_markdown(root: Path) -> str:
    """The README's ``## Results`` section, from the ``verdicts`` of the
    committed ``<root>/results/<notebook>/metrics.json`` files: a table of
    claim × suite (verdict, estimate, its 95 % CI, seeds, wins), each
    verdict's statement, and the notebooks whose results hold no verdicts yet.
    The text depends on those files alone, so the README can be checked
    against them."""
    rows, statements, without = [], [], []
    for path in sorted((Path(root) / "results").glob("*/metrics.json")):
        notebook = path.parent.name
        verdicts = json.loads(path.read_text()).get("verdicts") or []
        if not verdicts:
            without.append(notebook)
        for v in verdicts:
            rows.append((str(v["claim"]), notebook, v))
    rows.sort(key=lambda row: row[0])  # by claim; within a claim, in notebook order (a stable sort)
    lines = [RESULTS_HEADING, "",
             _wrap("Generated by `python -m avil.reproduce --summary --write` from the `verdicts` in the committed "
                   "`results/<notebook>/metrics.json` files, which `make reproduce` writes."), ""]
    if rows:
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        # Re-rendered from the stored numbers, so the text follows them.
        verdicts = [Verdict.from_dict(v) for _, _, v in rows]
        table = prose.verdicts_table(verdicts)
        for (claim, notebook, _), (_, row), v in zip(rows, table.iterrows(), verdicts):
            cells = [_cell(row["claim"]), _cell(row["suite"]), f"`{notebook}`", _cell(row["verdict"]),
                     _cell(row["estimate"]), _cell(row["95 % CI"]), _cell(row["seeds"]), _cell(row["wins"])]
            lines.append("| " + " | ".join(cells) + " |")
            statements.append(f"- `{notebook}`: {_cell(prose.verdict(v))}")
        lines += ["", *statements, ""]
    if without:
        lines.append(_wrap("No verdicts yet in the committed results of " + ", ".join(f"`{n}`" for n in without)
                           + "."))
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def results_section(readme: str) -> Optional[str]:
    """README's ``## Results`` section as ``results_markdown`` writes it (from
    its heading to the next ``## `` heading, trailing blank lines dropped), or
    None if it has none."""
    lines = readme.splitlines(keepends=True)
    if RESULTS_HEADING + "\n" not in lines:
        return None
    first = lines.index(RESULTS_HEADING + "\n")
    end = next((i for i in range(first + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "".join(lines[first:end]).rstrip("\n") + "\n"


def write_results_section(root: Path) -> Path:
    """Rewrite README.md's ``## Results`` section in place with
    ``results_markdown(root)``; without one, add it after the section of
    ``## The two commands`` (or at the end). Atomic (``avil.io``)."""
    from ..io import write_text

    path = Path(root) / "README.md"
    lines = path.read_text().splitlines(keepends=True)

    def next_heading(after: int) -> int:
        return next((i for i in range(after + 1, len(lines)) if lines[i].startswith("## ")), len(lines))

    if RESULTS_HEADING + "\n" in lines:
        first = lines.index(RESULTS_HEADING + "\n")
        end = next_heading(first)
    else:
        anchor = next((i for i, line in enumerate(lines) if line.startswith("## The two commands")), len(lines))
        first = end = next_heading(anchor)
    before, after = "".join(lines[:first]).rstrip("\n"), "".join(lines[end:])
    write_text(path, (before + "\n\n" if before else "") + results_markdown(root) + ("\n" + after if after else ""))
    return path


@contextlib.contextmanager
def _make_reproduce_environment(profile: str) -> Iterator[None]:
    """The environment the notebook kernels inherit: the profile, and the mark
    that lets them write metrics.json; restored afterwards."""
    saved = {name: os.environ.get(name) for name in ("AVIL_PROFILE", MAKE_REPRODUCE_ENV)}
    os.environ.update({"AVIL_PROFILE": profile, MAKE_REPRODUCE_ENV: "1"})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avil.reproduce",
                                     description="Execute every notebook with papermill and summarise.")
    parser.add_argument("--profile", default="default", choices=PROFILES)
    parser.add_argument("--inplace", action="store_true",
                        help="overwrite notebooks/*.ipynb with the executed copies (the committed outputs)")
    parser.add_argument("--only", nargs="*", default=None, help="notebook names (stems) to run")
    parser.add_argument("--summary", action="store_true",
                        help="run nothing; print README.md's Results section from the committed metrics.json files")
    parser.add_argument("--write", action="store_true", help="with --summary: rewrite that section of README.md")
    args = parser.parse_args(argv)
    if args.write and not args.summary:
        parser.error("--write rewrites README.md's Results section: give it with --summary.")
    if args.summary:
        root = find_root()
        if root is None:
            raise FileNotFoundError(f"no avil repository (a folder with avil/ and notebooks/) holds {Path.cwd()}. "
                                    "Fix: run from a checkout of the repository.")
        print(results_markdown(root), end="")
        if args.write:
            print(f"(written to {write_results_section(root)})")
        return 0
    with _make_reproduce_environment(args.profile):
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
