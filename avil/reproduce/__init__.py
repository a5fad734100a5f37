"""What the notebooks share (docs/design.md §6), one module per concern:

- ``runs``: the method-by-seed comparison loop, serial or in forked
  processes (``compare``, ``run_all``, ``auxiliary_effects``);
- ``stats``: paired differences and their t-intervals, ``summarize``, and the
  per-run records of the α-step and of the final weights' ranking;
- ``tables`` and ``plots``: what the notebooks show;
- ``results``: profiles, where results go, provenance, the metrics file and a
  notebook's closing cell (``finish``);
- ``ablation``: notebook 03's ablation of the α-step (``from avil.reproduce
  import ablation``);
- ``__main__``: ``make reproduce``, which executes every notebook with papermill:

    python -m avil.reproduce --profile default            # into results/<notebook>/
    python -m avil.reproduce --profile default --inplace  # refresh the committed notebooks

A notebook calls them through this package: ``reproduce.compare(...)``.
"""
from . import claims, prose
from .claims import Verdict, c1, c2, c2_pooled, c3, not_measured
from .plots import plot_alpha_step, plot_dev, plot_final_weights, plot_paired_differences, plot_weights
from .results import (PROFILES, Stopwatch, active_profile, find_root, finish, jsonable, metrics_path, provenance,
                      results_dir, write_metrics)
from .runs import AuxiliaryEffect, CompareError, Run, auxiliary_effects, compare, run_all
from .stats import (PairedDifference, ablation_records, alpha_step_cost, alpha_step_records, holm, mean_std,
                    minimum_detectable_effect, paired_difference, ranked_below, summarize)
from .tables import ablation_table, alpha_step_table, effects_table, final_weights_table, suite_table, table

# make reproduce's functions live in __main__.py and are imported on first use:
# importing that module here would make `python -m avil.reproduce` find it
# already imported and run a second copy of it (runpy warns about that).
_MAKE_REPRODUCE = ("main", "notebooks", "print_summary", "run_notebook")


def __getattr__(name):
    if name in _MAKE_REPRODUCE:
        from . import __main__ as make_reproduce
        return getattr(make_reproduce, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AuxiliaryEffect", "CompareError", "PROFILES", "PairedDifference", "Run", "Stopwatch", "Verdict",
           "ablation_records", "ablation_table", "active_profile", "alpha_step_cost", "alpha_step_records",
           "alpha_step_table", "auxiliary_effects", "c1", "c2", "c2_pooled", "c3", "claims", "compare", "effects_table",
           "final_weights_table", "find_root", "finish", "holm", "jsonable", "main", "mean_std", "metrics_path",
           "minimum_detectable_effect", "not_measured", "notebooks", "paired_difference", "plot_alpha_step",
           "plot_dev", "plot_final_weights", "plot_paired_differences", "plot_weights", "print_summary", "prose",
           "provenance", "ranked_below", "results_dir", "run_all", "run_notebook", "suite_table", "summarize", "table",
           "write_metrics"]
