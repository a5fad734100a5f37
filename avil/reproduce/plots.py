"""The notebooks' figures: the dev metric per epoch, task weights and α per
epoch as small multiples, the α-step's solve, the final weights, and paired
differences per suite.

Every figure labels its axes with units, has a legend, and says on the figure
what its lines, bars and dots are (docs/design.md §6, "Figures"):
per-seed values are drawn as thin lines or dots beside their mean, never as a
band whose meaning a reader has to guess.
"""
import math
from typing import Dict, List, Optional

import torch

from ..history import History

SEED_LINE = {"lw": 0.8, "alpha": 0.45}  # one seed
MEAN_LINE = {"lw": 2.2}  # mean over seeds
GREY_STYLES = ["-", "--", ":", "-."]  # plot_final_weights' tasks without a colour of their own
SEED_ROW_OFFSET = 0.22  # plot_paired_differences: the seeds' dots below their row's mean, in rows
QUANTITY = {"task_weights": "task weight\n(loss scale)", "alphas": "α"}


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


def plot_dev(histories: Dict[str, List[History]], title: str = "", scale: float = 100.0, unit: str = "%",
             metric: str = "dev metric"):
    """The target's dev metric per epoch, one line per label (the mean over
    seeds), legend in the dict's order. ``metric`` names it on the y axis, in
    ``unit`` after multiplying by ``scale``. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.8, 3.6), layout="constrained")
    for label, runs in histories.items():
        dev = torch.tensor([h.dev for h in runs])  # (seeds, epochs)
        ax.plot(range(1, dev.shape[1] + 1), scale * dev.mean(0), marker=".", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"target {metric} ({unit})")
    _integer_epochs(ax)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"target {metric} per epoch", fontsize=10)
    fig.legend(loc="outside right upper", fontsize=8, title=f"{_seeds_label(histories)}", title_fontsize=8)
    return fig


def plot_weights(histories: Dict[str, List[History]], title: str = ""):
    """Task weights and α per epoch as small multiples: one row per method
    and quantity (its task weights where they differ between tasks, its α
    where it has one), one column per task. Each seed is a thin line, the
    mean over seeds a thick one; the y axis is shared within a row. Returns
    the figure, or None if no method has weights that vary or α."""
    import matplotlib.pyplot as plt

    rows = []  # (method, History field), the method's weights above its α
    for method, runs in histories.items():
        if runs and _weights_vary(runs):
            rows.append((method, "task_weights"))
        if runs and runs[0].alphas:
            rows.append((method, "alphas"))
    if not rows:
        return None
    tasks = list(dict.fromkeys(name for method, _ in rows for name in histories[method][0].tasks))
    fig, axes = plt.subplots(len(rows), len(tasks), figsize=(1.2 + 2.4 * len(tasks), 1.0 + 1.75 * len(rows)),
                             sharex=True, sharey="row", squeeze=False, layout="constrained")
    for r, (method, field) in enumerate(rows):
        runs = histories[method]
        drawn = []
        for c, name in enumerate(tasks):
            ax = axes[r, c]
            if name not in runs[0].tasks:  # this method did not train that task
                fig.delaxes(ax)
                continue
            drawn.append(ax)
            series = torch.tensor([[epoch[name] for epoch in getattr(h, field)] for h in runs])  # (seeds, epochs)
            _seeds_and_mean(ax, series, f"C{c}")
            ax.grid(alpha=0.3)
            _integer_epochs(ax)
            ax.set_title(name, fontsize=9)
        drawn[0].set_ylabel(f"{method}:\n{QUANTITY[field]}", fontsize=9)
    for column in axes.T:
        [ax for ax in column if ax in fig.axes][-1].set_xlabel("epoch")
    fig.legend(handles=_style_handles(_seeds_label({m: histories[m] for m, _ in rows})),
               loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title or "task weights and α per epoch", fontsize=11)
    return fig


def plot_alpha_step(histories: Dict[str, List[History]], title: str = "", loss: str = "cross-entropy"):
    """How well each αVIL run's α-step was solved, per epoch: the target's dev
    loss (``loss`` names it) at the chosen α and at α_init, the solver's
    evaluations, the seconds it took, and how many α ended on a trust-region
    bound. One colour per method; each seed a thin line, the mean over seeds
    a thick one. Returns the figure (None if no run has an α-step)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    runs_by = {m: runs for m, runs in histories.items() if runs and runs[0].alpha_step}
    if not runs_by:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.2), sharex=True, squeeze=False, layout="constrained")
    (ax_loss, ax_evals), (ax_seconds, ax_bound) = axes
    panels = (
        (ax_evals, "objective evaluations", "evaluations per α-step", lambda step, seconds: step["evaluations"]),
        (ax_seconds, "wall time of the α-step", "seconds", lambda step, seconds: seconds),
        (ax_bound, "α that ended on a bound", "α on a bound (count)", lambda step, seconds: len(step["on_bound"])),
    )
    method_handles, losses = [], []
    for i, (method, runs) in enumerate(runs_by.items()):
        color = f"C{i}"
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
    ax_loss.set_title("target dev loss at the chosen α and at α_init", fontsize=10)
    ax_loss.set_ylabel(f"target dev loss ({loss})")
    low = min(float(s.min()) for s in losses)
    if low > 0 and max(float(s.max()) for s in losses) / low > 10:  # spans orders of magnitude
        ax_loss.set_yscale("log")
    for ax, name, ylabel, _ in panels:
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(ylabel)
    ax_bound.yaxis.get_major_locator().set_params(integer=True)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        _integer_epochs(ax)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    styles = _style_handles(_seeds_label(runs_by))
    styles.append(Line2D([], [], color="0.3", ls=":", **MEAN_LINE, label="mean at α_init (dev loss only)"))
    fig.legend(handles=method_handles + styles, loc="outside lower center", ncol=min(6, len(method_handles) + 3),
               fontsize=8, frameon=False)
    fig.suptitle(title or "the α-step per epoch", fontsize=11)
    return fig


def plot_final_weights(histories: Dict[str, List[History]], colors: Optional[Dict[str, str]] = None,
                       title: str = ""):
    """Per label, two panels: the final task weights (bar: mean over seeds,
    error bar: ± 1 standard deviation over seeds, dots: one per seed) and the
    weights per epoch (mean over seeds). ``colors`` maps task names to
    matplotlib colours (grey otherwise). Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    colors = colors or {}
    fig, axes = plt.subplots(2, len(histories), figsize=(1.5 + 4.4 * len(histories), 6.8), sharey="row",
                             squeeze=False, layout="constrained")
    task_handles = {}
    for (ax_bar, ax_line), (label, runs) in zip(axes.T, histories.items()):
        names = runs[0].tasks
        palette = [colors.get(n, "tab:grey") for n in names]
        # tasks left grey tell each other apart by their line style
        grey = [n for n in names if n not in colors]
        dashes = {n: GREY_STYLES[i % len(GREY_STYLES)] for i, n in enumerate(grey)}
        final = torch.tensor([[h.task_weights[-1][n] for n in names] for h in runs])  # (seeds, tasks)
        mean = final.mean(0).tolist()  # (tasks,)
        ax_bar.bar(range(len(names)), mean, color=palette, alpha=0.75)
        if len(runs) > 1:  # no spread with one seed
            ax_bar.errorbar(range(len(names)), mean, yerr=final.std(0).tolist(), fmt="none", ecolor="k", capsize=4)
        # the seeds side by side within each bar, so that equal weights stay visible
        offsets = torch.linspace(-0.18, 0.18, len(runs)) if len(runs) > 1 else torch.zeros(1)  # (seeds,)
        ax_bar.scatter((torch.arange(len(names))[None, :] + offsets[:, None]).flatten(), final.flatten(),
                       color="k", s=10, zorder=3)
        ax_bar.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
        ax_bar.set_title(f"{label}: final task weights", fontsize=10)
        ax_bar.set_xlabel("task")
        per_epoch = torch.tensor([[[e[n] for n in names] for e in h.task_weights] for h in runs]).mean(0)  # (E, tasks)
        for j, (name, color) in enumerate(zip(names, palette)):
            line, = ax_line.plot(range(1, per_epoch.shape[0] + 1), per_epoch[:, j], marker=".", color=color,
                                 ls=dashes.get(name, "-"), label=name)
            task_handles.setdefault(name, line)
        ax_line.set_title(f"{label}: task weights per epoch", fontsize=10)
        ax_line.set_xlabel("epoch")
        _integer_epochs(ax_line)
        for ax in (ax_bar, ax_line):
            ax.axhline(0.0, color="grey", lw=0.6)
            ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("final task weight\n(loss scale)")
    axes[1, 0].set_ylabel("task weight (loss scale),\nmean over seeds")
    seeds = _seeds_label(histories)
    marks = [Patch(color="0.6", label=f"bar: {seeds}"), Line2D([], [], color="k", ls="none", marker="o", ms=3,
                                                                label="dot: one seed")]
    if any(len(runs) > 1 for runs in histories.values()):
        marks.insert(1, Line2D([], [], color="k", marker="|", ms=10, ls="none",
                               label="error bar: ± 1 standard deviation over seeds"))
    fig.legend(handles=marks, loc="outside lower center", ncol=len(marks), fontsize=8, frameon=False)
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
