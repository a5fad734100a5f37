"""What the notebooks share (docs/design.md §6), one module per concern:

- ``runs``: the method-by-seed comparison loop, serial or in forked
  processes (``compare``, ``run_all``, ``auxiliary_effects``);
- ``stats``: paired differences and their t-intervals, ``summarize``, and the
  per-run records of the α-step and of the final weights' ranking;
- ``tables``, ``plots`` and ``weight_plots``: what the notebooks show (the
  figures of task weights in ``weight_plots``);
- ``results``: profiles, where a run's results go (only ``make reproduce``
  writes ``metrics.json``; other runs ``runs/<profile>-<hash>.json``),
  provenance, and a notebook's first and last calls (``start``, ``finish``);
- ``ablation``: notebook 03's ablation of the α-step (``from avil.reproduce
  import ablation``);
- ``__main__``: ``make reproduce``, which executes every notebook with
  papermill, and the README's Results section (``results_markdown``):

    python -m avil.reproduce --profile default            # into results/<notebook>/metrics.json
    python -m avil.reproduce --profile default --inplace  # and refresh the committed notebooks
    python -m avil.reproduce --summary [--write]          # README.md's Results section

A notebook calls them through this package: ``reproduce.compare(...)``.
"""
from . import claims, prose
from .claims import Verdict, c1, c2, c2_pooled, c3, not_measured
from .plots import plot_alpha_step, plot_dev, plot_paired_differences
from .results import (MAKE_REPRODUCE_ENV, PROFILES, NotebookRun, Stopwatch, active_profile, committed_parameters,
                      find_root, finish, jsonable, make_reproduce_path, metrics_path, provenance, results_dir,
                      results_path, runs_path, start, write_metrics)
from .search import StaticSearch, static_search
from .runs import AuxiliaryEffect, CompareError, Run, auxiliary_effects, compare, run_all
from .stats import (PairedDifference, ablation_records, alpha_step_cost, alpha_step_records, holm, mean_std,
                    minimum_detectable_effect, paired_difference, summarize)
from .tables import ablation_table, alpha_step_table, effects_table, suite_table, table
from .weight_plots import plot_final_weights, plot_weights

# make reproduce's functions live in __main__.py and are imported on first use:
# importing that module here would make `python -m avil.reproduce` find it
# already imported and run a second copy of it (runpy warns about that).
_MAKE_REPRODUCE = ("main", "notebooks", "print_summary", "results_markdown", "results_section", "run_notebook",
                   "write_results_section")


def __getattr__(name):
    if name in _MAKE_REPRODUCE:
        from . import __main__ as make_reproduce
        return getattr(make_reproduce, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AuxiliaryEffect", "CompareError", "MAKE_REPRODUCE_ENV", "NotebookRun", "PROFILES", "PairedDifference",
           "Run", "StaticSearch", "Stopwatch", "Verdict", "ablation_records", "ablation_table", "active_profile",
           "alpha_step_cost", "alpha_step_records", "alpha_step_table", "auxiliary_effects", "c1", "c2", "c2_pooled",
           "c3", "claims", "committed_parameters", "compare", "effects_table", "find_root",
           "finish", "holm", "jsonable", "main", "make_reproduce_path", "mean_std", "metrics_path",
           "minimum_detectable_effect", "not_measured", "notebooks", "paired_difference", "plot_alpha_step",
           "plot_dev", "plot_final_weights", "plot_paired_differences", "plot_weights", "print_summary", "prose",
           "provenance", "results_dir", "results_markdown", "results_path", "results_section",
           "run_all", "run_notebook", "runs_path", "start", "static_search", "suite_table", "summarize", "table",
           "write_metrics", "write_results_section"]
