"""The notebooks' figures: the dev metric per epoch, task weights and α per
epoch as small multiples, the α-step's solve, the final weights, and paired
differences per suite.

Every figure labels its axes with units, has a legend outside the data, and
says on the figure what its lines, bars, bands and dots are (docs/design.md
§6, "Figures"): per-seed values are drawn as thin lines or dots beside their
mean, or as a min–max band the legend names; error bars span the seeds' min
to max, so they never leave the range the values can take. Where a run's
config holds the bounds its values are kept in (αVIL's weight_min/weight_max
and alpha_min/alpha_max), they are drawn as thin dashed grey lines.
"""
import math
import textwrap
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..history import History
from ..methods import METHODS
from .prose import effect_kind

SEED_LINE = {"lw": 0.8, "alpha": 0.45}  # one seed
MEAN_LINE = {"lw": 2.2}  # mean over seeds
BAND = {"alpha": 0.13, "lw": 0}  # min–max over seeds
BOUND_LINE = {"color": "0.45", "ls": (0, (4, 3)), "lw": 0.9, "zorder": 1.5}  # a bound of the values
GREY_STYLES = ["-", "--", ":", "-."]  # plot_final_weights' tasks without a colour of their own
DEV_STYLES = ["-", "--", "-.", ":"]  # plot_dev: lines of similar colour still differ by style ...
DEV_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]  # ... and by marker
# Okabe & Ito's colour-blind-safe palette (black left out: it is the error bars' and dots' colour)
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#999999"]
SEED_ROW_OFFSET = 0.22  # plot_paired_differences: the seeds' dots below their row's mean, in rows
# plot_weights: a row's y range is never narrower than this, so that float noise
# around a constant (e.g. weights of 1 ± 0.005) does not fill a panel as if it were signal
MIN_SPAN = 0.5
ROW_LABEL_WIDTH = 20  # plot_weights: characters per line of a row's method label
CONSTANT_TOL = 1e-9  # a series whose values differ by no more than this is constant
ALPHA_LABEL = "α\n(mixing weight)"
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


def _weights_vary(runs: List[History]) -> bool:
    """Whether the task weights differ between tasks by more than float noise
    (a method whose weights are all equal is not worth a row)."""
    return any(len({round(w, 6) for w in ws.values()}) > 1 for h in runs for ws in h.task_weights)


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


def weight_label(runs: List[History]) -> str:
    """What a method's History.task_weights hold, for an axis: the method
    class's ``weight_label`` where it declares one (e.g. gcs records mean
    gates, not loss scales), else a loss scale for methods with an α-step
    (αVIL) and a plain "task weight" otherwise."""
    declared = getattr(METHODS.get(runs[0].method), "weight_label", None) if runs else None
    if declared:
        return declared
    return "task weight\n(loss scale)" if runs and runs[0].alphas else "task weight"


def _span_limits(low: float, high: float, min_span: float, floor: Optional[float] = None) -> Tuple[float, float]:
    """y limits holding [low, high] with 6 % padding, never narrower than
    ``min_span`` (widened about the data's middle) and, where the values
    cannot go below ``floor``, not reaching far below it."""
    span = max(high - low, min_span)
    pad = 0.06 * span
    middle = (low + high) / 2
    lo, hi = middle - span / 2 - pad, middle + span / 2 + pad
    if floor is not None and low >= floor and lo < floor - pad:
        lo, hi = floor - pad, floor - pad + (hi - lo)
    return lo, hi


def _draw_bounds(ax, bounds: Optional[Tuple[float, float]]) -> bool:
    """Draw the bounds that lie inside ``ax``'s current y limits; return whether any was drawn."""
    if bounds is None:
        return False
    lo, hi = ax.get_ylim()
    drawn = False
    for value in bounds:
        if lo <= value <= hi:
            ax.axhline(value, **BOUND_LINE)
            drawn = True
    return drawn


def _is_constant(series: torch.Tensor) -> bool:
    return float(series.max() - series.min()) <= CONSTANT_TOL


def _constant_note(ax, value: float, bounds: Optional[Tuple[float, float]], names: Sequence[str]) -> None:
    """Say on ``ax`` that its curves never leave ``value`` (naming the bound
    it sits on), above or below the line so as not to cover it. Call it
    once the y limits are set."""
    where = ""
    if bounds is not None:
        for bound, name in zip(bounds, names):
            if abs(value - bound) <= CONSTANT_TOL:
                where = f" (= {name})"
    lo, hi = ax.get_ylim()
    y = 0.3 if (value - lo) / (hi - lo) > 0.5 else 0.7
    ax.text(0.5, y, f"constant at {value:g}{where}\nin every seed and epoch", transform=ax.transAxes,
            ha="center", va="center", fontsize=7.5, color="0.25",
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.8", "alpha": 0.9})


def plot_dev(histories: Dict[str, List[History]], title: str = "", scale: float = 100.0, unit: str = "%",
             metric: str = "dev metric", zoom_from_epoch: Optional[int] = 2, spread: bool = True):
    """The target's dev metric per epoch, one line per label (the mean over
    seeds, each label its own colour, line style and marker) with the seeds'
    min–max as a band (``spread``, where a label has several seeds); legend
    in the dict's order. ``metric`` names it on the y axis, in ``unit`` after
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
        if spread and dev.shape[0] > 1:
            ax.fill_between(epochs, low, high, color=line.get_color(), **BAND)
            banded = True
        shown = epochs >= (zoom_from_epoch or 1)
        if shown.any():
            later.append(torch.stack([low[shown].min(), high[shown].max()]) if spread else
                         torch.stack([mean[shown].min(), mean[shown].max()]))
        off_axis += [(int(e), float(m)) for e, m in zip(epochs[~shown], mean[~shown])]
    if zoom_from_epoch and later and off_axis:
        lo, hi = float(torch.stack(later)[:, 0].min()), float(torch.stack(later)[:, 1].max())
        pad = 0.08 * max(hi - lo, 1e-9)
        ax.set_ylim(lo - pad, hi + pad)
        hidden = sorted({e for e, m in off_axis if not lo - pad <= m <= hi + pad})
        if hidden:
            means = [m for e, m in off_axis if e in hidden]
            epochs_text = ", ".join(str(e) for e in hidden)
            ax.text(0.99, 0.02, f"y axis fitted to epochs ≥ {zoom_from_epoch}; off the axis: epoch {epochs_text} "
                                f"(means {min(means):.1f}–{max(means):.1f} {unit})", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=7.5, color="0.3")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"target {metric} ({unit})")
    _integer_epochs(ax)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"target {metric} per epoch", fontsize=10)
    legend_title = _seeds_label(histories) + ("\nband: min–max over seeds" if banded else "")
    fig.legend(loc="outside right upper", fontsize=8, title=legend_title, title_fontsize=8)
    return fig


def plot_weights(histories: Dict[str, List[History]], title: str = "",
                 weight_labels: Optional[Dict[str, str]] = None, show_bounds: bool = True,
                 drop_constant_rows: bool = False):
    """Task weights and α per epoch as small multiples: one row per method
    and quantity (its task weights where they differ between tasks, its α
    where it has one), one column per task. Each seed is a thin line, the
    mean over seeds a thick one; the y axis is shared within a row and never
    spans less than ``MIN_SPAN``, so float noise stays flat.

    weight_labels: {label: what its task weights are}, for the row's y axis
        (default: ``weight_label``, from the method).
    show_bounds: draw the bounds the runs' config kept the values in
        (``bounds_of``) as dashed grey lines.
    drop_constant_rows: leave out rows where every curve is constant (e.g.
        pinned weights), naming them under the title; otherwise such panels
        say "constant at ...".
    Returns the figure, or None if no method has weights that vary or α (or
    every such row is constant and dropped)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    weight_labels = weight_labels or {}
    rows = []  # (method, History field), the method's weights above its α
    for method, runs in histories.items():
        if runs and _weights_vary(runs):
            rows.append((method, "task_weights"))
        if runs and runs[0].alphas:
            rows.append((method, "alphas"))
    series_of = {(method, field): {name: torch.tensor([[epoch[name] for epoch in getattr(h, field)]
                                                       for h in histories[method]])  # (seeds, epochs)
                                   for name in histories[method][0].tasks}
                 for method, field in rows}
    dropped = []
    if drop_constant_rows:
        dropped = [row for row in rows if all(_is_constant(s) for s in series_of[row].values())]
        rows = [row for row in rows if row not in dropped]
    if not rows:
        return None
    tasks = list(dict.fromkeys(name for method, _ in rows for name in histories[method][0].tasks))
    fig, axes = plt.subplots(len(rows), len(tasks), figsize=(1.6 + 2.4 * len(tasks), 1.2 + 2.0 * len(rows)),
                             sharex=True, sharey="row", squeeze=False, layout="constrained")
    bound_values = {}  # {field: bounds drawn}
    for r, (method, field) in enumerate(rows):
        runs = histories[method]
        bounds = bounds_of(runs, field) if show_bounds else None
        drawn, constant = [], []
        for c, name in enumerate(tasks):
            ax = axes[r, c]
            if name not in runs[0].tasks:  # this method did not train that task
                fig.delaxes(ax)
                continue
            drawn.append(ax)
            series = series_of[(method, field)][name]  # (seeds, epochs)
            _seeds_and_mean(ax, series, OKABE_ITO[c % len(OKABE_ITO)])
            if _is_constant(series):
                constant.append((ax, float(series[0, 0])))
            ax.grid(alpha=0.3)
            _integer_epochs(ax)
            ax.set_title(name, fontsize=9)
        values = torch.cat([s.flatten() for s in series_of[(method, field)].values()])
        drawn[0].set_ylim(*_span_limits(float(values.min()), float(values.max()), MIN_SPAN,
                                        floor=bounds[0] if bounds else 0.0))
        for ax in drawn:
            if _draw_bounds(ax, bounds):
                bound_values[field] = bounds
        for ax, value in constant:
            _constant_note(ax, value, bounds, BOUND_KEYS[field])
        quantity = ALPHA_LABEL if field == "alphas" else weight_labels.get(method) or weight_label(runs)
        drawn[0].set_ylabel(f"{textwrap.fill(method + ':', ROW_LABEL_WIDTH)}\n{quantity}", fontsize=9)
    for column in axes.T:
        [ax for ax in column if ax in fig.axes][-1].set_xlabel("epoch")
    handles = _style_handles(_seeds_label({m: histories[m] for m, _ in rows}))
    if bound_values:
        text = "; ".join(f"{'weights' if field == 'task_weights' else 'α'} in [{lo:g}, {hi:g}]"
                         for field, (lo, hi) in bound_values.items())
        handles.append(Line2D([], [], **BOUND_LINE, label=f"bound ({text})"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    suptitle = (title or "task weights and α per epoch") + "\n(higher: the task counts more in training)"
    if dropped:
        names = ", ".join(f"{m} ({'α' if f == 'alphas' else 'task weights'})" for m, f in dropped)
        suptitle += "\n" + textwrap.fill(f"not drawn, every curve constant: {names}",
                                         int(11 * fig.get_figwidth()))  # about 11 characters an inch
    fig.suptitle(suptitle, fontsize=11)
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


def _bar_order(names: List[str], effects: Optional[Dict[str, object]]) -> List[str]:
    """Tasks without a measured effect (the target) first, in their order,
    then the auxiliaries from the most helpful measured effect to the most harmful."""
    if not effects:
        return names
    unmeasured = [n for n in names if n not in effects]
    measured = sorted((n for n in names if n in effects), key=lambda n: -_difference(effects[n]).mean)
    return unmeasured + measured


def _difference(effect):
    """The PairedDifference of an AuxiliaryEffect, or the PairedDifference itself."""
    return getattr(effect, "difference", effect)


def plot_final_weights(histories: Dict[str, List[History]], colors: Optional[Dict[str, str]] = None,
                       title: str = "", effects: Optional[Dict[str, object]] = None, effect_scale: float = 100.0,
                       effect_unit: str = "points", show_bounds: bool = True):
    """Per label, two panels: the final task weights (bar: mean over seeds,
    error bar: the seeds' min to max, dots: one per seed) and the weights per
    epoch (mean over seeds).

    colors: {task: matplotlib colour}; tasks it leaves out are grey, told
        apart by line style. Default: Okabe & Ito's colour-blind-safe palette,
        one colour per task.
    effects: {auxiliary: AuxiliaryEffect or PairedDifference} (e.g.
        ``reproduce.auxiliary_effects``'s): the bars run from the most helpful
        measured effect to the most harmful (the target first) and each says
        its class (helpful / harmful / no effect detected, by the 95 % CI) and
        mean effect, ×``effect_scale`` in ``effect_unit``.
    show_bounds: draw the bounds the weights were kept in (``bounds_of``:
        weight_min, the floor, and weight_max) as dashed grey lines.
    Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    all_tasks = list(dict.fromkeys(n for runs in histories.values() for n in runs[0].tasks))
    if colors is None:
        colors = {n: OKABE_ITO[i % len(OKABE_ITO)] for i, n in enumerate(all_tasks)}
    fig, axes = plt.subplots(2, len(histories), figsize=(1.8 + 4.6 * len(histories), 7.4), sharey="row",
                             squeeze=False, layout="constrained")
    task_handles, drawn_bounds, tops = {}, set(), [0.0, 0.0]
    for (ax_bar, ax_line), (label, runs) in zip(axes.T, histories.items()):
        names = _bar_order(runs[0].tasks, effects)
        palette = [colors.get(n, "tab:grey") for n in names]
        # tasks left grey tell each other apart by their line style
        grey = [n for n in names if n not in colors]
        dashes = {n: GREY_STYLES[i % len(GREY_STYLES)] for i, n in enumerate(grey)}
        final = torch.tensor([[h.task_weights[-1][n] for n in names] for h in runs])  # (seeds, tasks)
        mean = final.mean(0)  # (tasks,)
        low, high = final.min(0).values, final.max(0).values  # (tasks,)
        ax_bar.bar(range(len(names)), mean.tolist(), color=palette, alpha=0.8)
        if len(runs) > 1:  # no spread with one seed
            ax_bar.errorbar(range(len(names)), mean.tolist(), yerr=[(mean - low).tolist(), (high - mean).tolist()],
                            fmt="none", ecolor="k", capsize=4)
        # the seeds side by side within each bar, so that equal weights stay visible
        offsets = torch.linspace(-0.18, 0.18, len(runs)) if len(runs) > 1 else torch.zeros(1)  # (seeds,)
        ax_bar.scatter((torch.arange(len(names))[None, :] + offsets[:, None]).flatten(), final.flatten(),
                       color="k", s=10, zorder=3)
        ax_bar.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
        ordered = " (ordered by measured effect)" if effects else ""
        ax_bar.set_title(f"{label}:\nfinal task weights{ordered}", fontsize=10)
        ax_bar.set_xlabel("task")
        per_epoch = torch.tensor([[[e[n] for n in names] for e in h.task_weights] for h in runs]).mean(0)  # (E, tasks)
        for j, (name, color) in enumerate(zip(names, palette)):
            line, = ax_line.plot(range(1, per_epoch.shape[0] + 1), per_epoch[:, j], marker=".", color=color,
                                 ls=dashes.get(name, "-"), label=name)
            task_handles.setdefault(name, line)
        ax_line.set_title(f"{label}:\ntask weights per epoch", fontsize=10)
        ax_line.set_xlabel("epoch")
        _integer_epochs(ax_line)
        tops = [max(tops[0], float(high.max())), max(tops[1], float(per_epoch.max()))]
        for ax in (ax_bar, ax_line):
            ax.grid(axis="y", alpha=0.3)
        if effects:
            for j, name in enumerate(names):
                if name in effects:
                    diff = _difference(effects[name])
                    text = f"{effect_kind(diff).replace(' detected', '')}\n{effect_scale * diff.mean:+.1f}"
                else:
                    text = "target" if name == runs[0].target else "not measured"
                ax_bar.annotate(text, (j, float(high[j])), xytext=(0, 4), textcoords="offset points", ha="center",
                                va="bottom", fontsize=7, color="0.15")
    axes[0, 0].set_ylim(0.0, tops[0] * (1.3 if effects else 1.1) or 1.0)  # room for the effects' labels
    axes[1, 0].set_ylim(0.0, tops[1] * 1.08 or 1.0)
    for (ax_bar, ax_line), runs in zip(axes.T, histories.values()):
        bounds = bounds_of(runs, "task_weights") if show_bounds else None
        for ax in (ax_bar, ax_line):
            if _draw_bounds(ax, bounds):
                drawn_bounds.add(bounds)
    axes[0, 0].set_ylabel("final task weight\n(loss scale)")
    axes[1, 0].set_ylabel("task weight (loss scale),\nmean over seeds")
    seeds = _seeds_label(histories)
    marks = [Patch(color="0.6", label=f"bar: {seeds}"), Line2D([], [], color="k", ls="none", marker="o", ms=3,
                                                                label="dot: one seed")]
    if any(len(runs) > 1 for runs in histories.values()):
        marks.insert(1, Line2D([], [], color="k", marker="|", ms=10, ls="none",
                               label="error bar: min to max over seeds"))
    if drawn_bounds:
        text = "; ".join(f"weight_min = {lo:g} (the floor), weight_max = {hi:g}" for lo, hi in sorted(drawn_bounds))
        marks.append(Line2D([], [], **BOUND_LINE, label=f"dashed: {text}"))
    if effects:
        marks.append(Patch(color="none", label=f"above a bar: the auxiliary's measured effect on the target's\n"
                                                f"test metric ({effect_unit}; its 95 % CI decides the class)"))
    fig.legend(handles=marks, loc="outside lower center", ncol=min(3, len(marks)), fontsize=8, frameon=False)
    fig.legend(handles=list(task_handles.values()), loc="outside right center", fontsize=8,
               title="task (lines:\nmean over seeds)", title_fontsize=8)
    fig.suptitle(title or "final task weights", fontsize=11)
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
