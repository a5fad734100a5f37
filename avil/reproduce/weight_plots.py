"""The notebooks' figures of task weights: task weights and α per epoch as
small multiples (``plot_weights``) and the final weights beside their
trajectories (``plot_final_weights``), with what a method's weights are
(``weight_label``). Their style and shared helpers are ``plots``'.
"""
import textwrap
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..history import History
from ..methods import METHODS
from .plots import (BOUND_KEYS, BOUND_LINE, OKABE_ITO, _integer_epochs, _seeds_and_mean, _seeds_label,
                    _style_handles, bounds_of)
from .prose import effect_kind

GREY_STYLES = ["-", "--", ":", "-."]  # plot_final_weights' tasks without a colour of their own
# plot_weights: a row's y range is never narrower than this, so that float noise
# around a constant (e.g. weights of 1 ± 0.005) does not fill a panel as if it were signal
MIN_SPAN = 0.5
ROW_LABEL_WIDTH = 20  # plot_weights: characters per line of a row's method label
CONSTANT_TOL = 1e-9  # a series whose values differ by no more than this is constant
ALPHA_LABEL = "α\n(mixing weight)"


def _weights_vary(runs: List[History]) -> bool:
    """Whether the task weights differ between tasks by more than float noise
    (a method whose weights are all equal is not worth a row)."""
    return any(len({round(w, 6) for w in ws.values()}) > 1 for h in runs for ws in h.task_weights)


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
    # One column of panels is narrow: two legend columns keep the legend within the figure's width.
    fig.legend(handles=marks, loc="outside lower center", ncol=min(3 if len(histories) > 1 else 2, len(marks)),
               fontsize=8, frameon=False)
    fig.legend(handles=list(task_handles.values()), loc="outside right center", fontsize=8,
               title="task (lines:\nmean over seeds)", title_fontsize=8)
    fig.suptitle(title or "final task weights", fontsize=11)
    return fig
