"""The notebooks' figures of runs and comparisons: the dev metric per epoch,
the α-step's solve and paired differences per suite, and the style and
helpers every figure shares (the weight figures are in ``weight_plots``).

Every figure labels its axes with units, has a legend outside the data, and
says on the figure what its lines, bars, bands and dots are (docs/design.md
§6, "Figures"): per-seed values are drawn as thin lines or dots beside their
mean, or as a min–max band the legend names; error bars span the seeds' min
to max, so they never leave the range the values can take. Where a run's
config holds the bounds its values are kept in (αVIL's weight_min/weight_max
and alpha_min/alpha_max), they are drawn as thin dashed grey lines.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..history import History

SEED_LINE = {"lw": 0.8, "alpha": 0.45}  # one seed
MEAN_LINE = {"lw": 2.2}  # mean over seeds
BAND = {"alpha": 0.13, "lw": 0}  # min–max over seeds
BOUND_LINE = {"color": "0.45", "ls": (0, (4, 3)), "lw": 0.9, "zorder": 1.5}  # a bound of the values
DEV_STYLES = ["-", "--", "-.", ":"]  # plot_dev: lines of similar colour still differ by style ...
DEV_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]  # ... and by marker
# Okabe & Ito's colour-blind-safe palette (black left out: it is the error bars' and dots' colour)
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#999999"]
SEED_ROW_OFFSET = 0.22  # plot_paired_differences: the seeds' dots below their row's mean, in rows
# the bounds a run's config holds, per History field: (config key of the lower bound, of the upper bound)
BOUND_KEYS = {"task_weights": ("weight_min", "weight_max"), "alphas": ("alpha_min", "alpha_max")}


def _seeds_label(runs_by: Dict[str, List[History]]) -> str:
    """"mean over 3 seeds", or "mean over seeds" where the methods ran different numbers."""
    counts = {len(runs) for runs in runs_by.values()}
    if len(counts) == 1:
        n = counts.pop()
        return f"mean over {n} seed{'s' if n != 1 else ''}"
    return "mean over seeds"


def _style_handles(mean_label: str, color: str = "0.3"):
    """Legend entries for the thin per-seed lines and the thick mean line."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=color, **SEED_LINE, label="one seed"),
            Line2D([], [], color=color, **MEAN_LINE, label=mean_label)]


def _seeds_and_mean(ax, series: torch.Tensor, color, **style):
    """Draw each seed of ``series`` (seeds, epochs) as a thin line and their
    mean per epoch as a thick one, in ``color``; return the mean's line."""
    epochs = range(1, series.shape[1] + 1)
    for seed in series:
        ax.plot(epochs, seed, color=color, **SEED_LINE, **style)
    line, = ax.plot(epochs, series.mean(0), color=color, **MEAN_LINE, **style)
    return line


def _integer_epochs(ax):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def bounds_of(runs: List[History], field: str) -> Optional[Tuple[float, float]]:
    """The (lower, upper) bound that ``field`` ("task_weights" or "alphas")
    of these runs was kept in, or None where nothing bounds it: the bounds
    are αVIL's (its weight rule clips weights to [weight_min, weight_max], its
    α-step keeps α in [alpha_min, alpha_max]), so only runs with an α-step
    have them, read from the config they recorded."""
    if not runs or not runs[0].alphas:
        return None
    low_key, high_key = BOUND_KEYS[field]
    config = runs[0].config
    if config.get(low_key) is None or config.get(high_key) is None:
        return None
    return float(config[low_key]), float(config[high_key])


def plot_dev(histories: Dict[str, List[History]], title: str = "", scale: float = 100.0, unit: str = "%",
             metric: str = "dev metric", zoom_from_epoch: Optional[int] = 2,
             spread: Union[bool, Sequence[str]] = True):
    """The target's dev metric per epoch, one line per label (the mean over
    seeds, each label its own colour, line style and marker) with the seeds'
    min–max as a band (``spread``: True for every label, or the labels to band,
    where a label has several seeds; many overlapping bands read as one);
    legend in the dict's order. ``metric`` names it on the y axis, in ``unit`` after
    multiplying by ``scale``.

    zoom_from_epoch: fit the y axis to the epochs from this one on, where the
    methods' differences are (the first epoch's low values would otherwise
    squeeze them into a few pixels); values left off the axis are named on
    the figure. None fits every epoch. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.4, 4.0), layout="constrained")
    later, off_axis, banded = [], [], False
    for i, (label, runs) in enumerate(histories.items()):
        dev = scale * torch.tensor([h.dev for h in runs])  # (seeds, epochs)
        epochs = torch.arange(1, dev.shape[1] + 1)  # (epochs,)
        mean = dev.mean(0)  # (epochs,)
        line, = ax.plot(epochs, mean, ls=DEV_STYLES[i % len(DEV_STYLES)], marker=DEV_MARKERS[i % len(DEV_MARKERS)],
                        ms=4, lw=1.6, label=label)
        low, high = dev.min(0).values, dev.max(0).values  # (epochs,)
        banded_here = spread is True or (not isinstance(spread, bool) and label in spread)
        if banded_here and dev.shape[0] > 1:
            ax.fill_between(epochs, low, high, color=line.get_color(), **BAND)
            banded = True
        shown = epochs >= (zoom_from_epoch or 1)
        if shown.any():
            later.append(torch.stack([low[shown].min(), high[shown].max()]) if banded_here else
                         torch.stack([mean[shown].min(), mean[shown].max()]))
        off_axis += [(label, int(e), float(m)) for e, m in zip(epochs[~shown], mean[~shown])]
    if zoom_from_epoch and later and off_axis:
        lo, hi = float(torch.stack(later)[:, 0].min()), float(torch.stack(later)[:, 1].max())
        pad = 0.08 * max(hi - lo, 1e-9)
        ax.set_ylim(lo - pad, hi + pad)
        hidden = [(label, e, m) for label, e, m in off_axis if not lo - pad <= m <= hi + pad]
        if hidden:  # only the means the axis leaves out, by name
            names = "; ".join(f"{label} {m:.1f}" for label, e, m in sorted(hidden, key=lambda item: (item[1], item[2])))
            epochs_text = ", ".join(str(e) for e in sorted({e for _, e, _ in hidden}))
            ax.text(0.99, 0.02, f"y axis fitted to epochs ≥ {zoom_from_epoch}; off the axis (epoch {epochs_text} "
                                f"means, {unit}): {names}", transform=ax.transAxes, wrap=True,
                    ha="right", va="bottom", fontsize=7, color="0.3")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"target {metric} ({unit})")
    _integer_epochs(ax)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"target {metric} per epoch", fontsize=10)
    which = "" if spread is True else f" ({', '.join(label for label in histories if label in spread)})"
    legend_title = _seeds_label(histories) + (f"\nband{which}: min–max over seeds" if banded else "")
    fig.legend(loc="outside right upper", fontsize=8, title=legend_title, title_fontsize=8)
    return fig


def plot_alpha_step(histories: Dict[str, List[History]], title: str = "", loss: str = "cross-entropy"):
    """How well each αVIL run's α-step was solved, per epoch: the target's dev
    loss (``loss`` names it) at the chosen α and at α_init (the α the solver
    starts from), how many times the solver evaluated that loss, the seconds
    it took, and how many of the run's K α ended on a bound. One colour per
    method; each seed a thin line, the mean over seeds a thick one. Returns
    the figure (None if no run has an α-step)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    runs_by = {m: runs for m, runs in histories.items() if runs and runs[0].alpha_step}
    if not runs_by:
        return None
    counts = {len(runs[0].alphas[0]) if runs[0].alphas else len(runs[0].tasks) for runs in runs_by.values()}
    n_alphas = counts.pop() if len(counts) == 1 else None  # K, where every method has the same
    k = f"K = {n_alphas}" if n_alphas else "K"
    alpha_bounds = {bounds_of(runs, "alphas") for runs in runs_by.values()} - {None}
    box = "[{:g}, {:g}]".format(*alpha_bounds.pop()) if len(alpha_bounds) == 1 else "their box"
    starts = {runs[0].config.get("alpha_init") for runs in runs_by.values()} - {None}
    start = f" (alpha_init={starts.pop()!r})" if len(starts) == 1 else ""
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 6.6), sharex=True, squeeze=False, layout="constrained")
    (ax_loss, ax_evals), (ax_seconds, ax_bound) = axes
    panels = (
        (ax_evals, "objective evaluations: times the solver computed\nthe target dev loss in one α-step",
         "dev-loss evaluations per α-step", lambda step, seconds: step["evaluations"]),
        (ax_seconds, "wall time of the α-step", "wall time (s)", lambda step, seconds: seconds),
        (ax_bound, f"α that ended on a bound of {box}: how many of the run's\n{k} α (K: one α per task); "
                   "many: the box limits the solve",
         f"α on a bound (count of {k})", lambda step, seconds: len(step["on_bound"])),
    )
    method_handles, losses = [], []
    for i, (method, runs) in enumerate(runs_by.items()):
        color = OKABE_ITO[i % len(OKABE_ITO)]
        final = torch.tensor([[s["loss_final"] for s in h.alpha_step] for h in runs])  # (seeds, epochs)
        initial = torch.tensor([[s["loss_init"] for s in h.alpha_step] for h in runs])  # (seeds, epochs)
        losses += [final, initial]
        _seeds_and_mean(ax_loss, final, color)
        ax_loss.plot(range(1, initial.shape[1] + 1), initial.mean(0), color=color, ls=":", **MEAN_LINE)
        for ax, _, _, value in panels:
            series = torch.tensor([[float(value(s, sec)) for s, sec in zip(h.alpha_step, h.alpha_step_seconds)]
                                   for h in runs])  # (seeds, epochs)
            _seeds_and_mean(ax, series, color)
        method_handles.append(Line2D([], [], color=color, **MEAN_LINE, label=method))
    ax_loss.set_title("target dev loss at the chosen α (solid) and at α_init (dotted)\n"
                      f"α_init: the α the solver starts from{start}\n"
                      "solid below dotted: the α-step lowered the loss",
                      fontsize=9.5)
    ax_loss.set_ylabel(f"target dev loss ({loss})")
    low = min(float(s.min()) for s in losses)
    if low > 0 and max(float(s.max()) for s in losses) / low > 10:  # spans orders of magnitude
        ax_loss.set_yscale("log")
    for ax, name, ylabel, _ in panels:
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(ylabel)
    ax_bound.yaxis.get_major_locator().set_params(integer=True)
    if n_alphas:  # the count's whole range, 0 to K
        ax_bound.set_ylim(-0.3, n_alphas + 0.3)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        _integer_epochs(ax)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    styles = _style_handles(_seeds_label(runs_by))
    styles.append(Line2D([], [], color="0.3", ls=":", **MEAN_LINE, label="mean at α_init (dev loss panel only)"))
    fig.legend(handles=method_handles + styles, loc="outside lower center", ncol=min(6, len(method_handles) + 3),
               fontsize=8, frameon=False)
    fig.suptitle(title or "the α-step per epoch", fontsize=11)
    return fig


def plot_paired_differences(columns: Dict[str, Dict[str, dict]], scale: float = 100.0, unit: str = "points",
                            reference: str = "single_task", row_name: str = "variant", title: str = ""):
    """One panel per suite: each row's paired difference (test − ``reference``,
    ×``scale`` in ``unit``) as its mean and confidence interval (black error
    bar) with the per-seed differences as dots, and a vertical line at 0.

    columns: {suite: {row label: PairedDifference.to_dict()}}. Rows run top
    to bottom in the dicts' order (the union over suites, first appearance
    first), as the table reads; a row a suite lacks says "not run" there.
    ``row_name`` names what the rows are on the y axis. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    if not columns or not any(columns.values()):
        raise ValueError("plot_paired_differences: columns is empty; pass {suite: {row label: "
                         "PairedDifference.to_dict()}} with at least one row.")
    labels = list(dict.fromkeys(label for by_label in columns.values() for label in by_label))
    fig, axes = plt.subplots(1, len(columns), figsize=(2.2 + 3.2 * len(columns), 1.5 + 0.3 * len(labels)),
                             sharey=True, squeeze=False, layout="constrained")
    confidences, one_seed = set(), False
    for ax, (suite, by_label) in zip(axes[0], columns.items()):
        for row, label in enumerate(labels):
            if label not in by_label:
                ax.text(0.02, row, "not run", transform=blended_transform_factory(ax.transAxes, ax.transData),
                        va="center", fontsize=7, color="0.5")
                continue
            d = by_label[label]
            confidences.add(d.get("confidence", 0.95))
            # the seeds just under their row's interval, so that neither hides the other
            ax.scatter([scale * x for x in d["differences"]], [row + SEED_ROW_OFFSET] * len(d["differences"]), s=14,
                       color="tab:blue", alpha=0.7, zorder=2)
            if d["half_width"] is None or not math.isfinite(d["half_width"]):  # one seed: no interval
                one_seed = True
                ax.plot(scale * d["mean"], row, "o", mfc="white", mec="k", zorder=3)
            else:
                ax.errorbar(scale * d["mean"], row, xerr=scale * d["half_width"], fmt="o", color="k", capsize=3,
                            zorder=3)
        ax.axvline(0.0, color="grey", lw=0.8, zorder=1)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(suite, fontsize=10)
        ax.set_xlabel(f"test − {reference} ({unit})")
    # the shared y axis has one locator and one formatter: set the rows once, on the first panel
    first = axes[0, 0]
    first.set_yticks(range(len(labels)), labels, fontsize=8)
    first.set_ylim(len(labels) - 0.5, -0.5)  # first row on top
    first.set_ylabel(row_name)
    level = "/".join(f"{100 * c:g}" for c in sorted(confidences)) or "95"
    handles = [Line2D([], [], color="k", marker="o", label=f"mean and {level} % CI"),
               Line2D([], [], color="tab:blue", alpha=0.6, marker="o", ls="none", label="one seed")]
    if one_seed:
        handles.append(Line2D([], [], color="k", marker="o", mfc="white", ls="none", label="mean (one seed: no CI)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title or f"test − {reference}, paired per seed", fontsize=11)
    return fig
