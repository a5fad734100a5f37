"""The notebooks' figures: the dev metric, task weights and α per epoch, the
α-step's solve, and the final weights."""
from typing import Dict, List, Optional

import torch

from ..history import History


def _band(ax, series: torch.Tensor, **style):
    """Plot the mean over seeds of ``series`` (seeds, epochs) per epoch, with a
    band from its min to its max in the line's colour; return the line."""
    epochs = range(1, series.shape[1] + 1)
    line, = ax.plot(epochs, series.mean(0), marker=".", **style)
    ax.fill_between(epochs, series.min(0).values, series.max(0).values, alpha=0.15, color=line.get_color())
    return line


def plot_dev(histories: Dict[str, List[History]], title: str = "", scale: float = 100.0, unit: str = "%"):
    """The target's dev metric per epoch, mean over seeds, one line per label. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for label, runs in histories.items():
        dev = torch.tensor([h.dev for h in runs])  # (seeds, epochs)
        ax.plot(range(1, dev.shape[1] + 1), scale * dev.mean(0), marker=".", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(unit)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title or "dev metric (mean over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_weights(histories: Dict[str, List[History]], title: str = ""):
    """Task weights per epoch for every method that has them (mean over seeds,
    band = min..max), and αVIL's α per epoch. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [(m, "task_weights") for m, runs in histories.items()
              # weights that differ from each other only by float noise are not worth a panel
              if any(len({round(w, 6) for w in ws.values()}) > 1 for h in runs for ws in h.task_weights)]
    panels += [(m, "alphas") for m, runs in histories.items() if runs[0].alphas]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (method, field) in zip(axes[0], panels):
        runs = histories[method]
        for name in runs[0].tasks:
            series = torch.tensor([[epoch[name] for epoch in getattr(h, field)] for h in runs])  # (seeds, E)
            _band(ax, series, label=name)
        ax.axhline(1.0, color="grey", lw=0.6, ls=":")
        ax.set_title(f"{method}: {'α' if field == 'alphas' else 'task weight'}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][-1].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_alpha_step(histories: Dict[str, List[History]], title: str = ""):
    """How well each αVIL run's α-step was solved, per epoch (mean over seeds,
    band = min..max): the target's dev loss at α_init and at the chosen α,
    the solver's evaluations, the seconds it took, and how many α ended on a
    trust-region bound. Returns the figure (None if no run has an α-step)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    runs_by = {m: runs for m, runs in histories.items() if runs and runs[0].alpha_step}
    if not runs_by:
        return None
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    panels = (
        (axes[0], "dev loss (solid: chosen α, dotted: α_init)", None),
        (axes[1], "evaluations", lambda step, seconds: step["evaluations"]),
        (axes[2], "seconds", lambda step, seconds: seconds),
        (axes[3], "α on a bound", lambda step, seconds: len(step["on_bound"])),
    )
    for method, runs in runs_by.items():
        final = torch.tensor([[s["loss_final"] for s in h.alpha_step] for h in runs])  # (seeds, epochs)
        initial = torch.tensor([[s["loss_init"] for s in h.alpha_step] for h in runs])  # (seeds, epochs)
        line = _band(axes[0], final, label=method)
        axes[0].plot(range(1, initial.shape[1] + 1), initial.mean(0), ls=":", color=line.get_color())
        for ax, _, value in panels[1:]:
            series = torch.tensor([[float(value(s, sec)) for s, sec in zip(h.alpha_step, h.alpha_step_seconds)]
                                   for h in runs])  # (seeds, epochs)
            _band(ax, series, color=line.get_color())
    for ax, name, _ in panels:
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_final_weights(histories: Dict[str, List[History]], colors: Optional[Dict[str, str]] = None,
                       title: str = ""):
    """Per label, two panels: the final task weights (bars: mean ± std over
    seeds, dots: seeds) and the weights per epoch (mean over seeds). ``colors``
    maps task names to matplotlib colours (grey otherwise). Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    colors = colors or {}
    fig, axes = plt.subplots(2, len(histories), figsize=(5 * len(histories), 6.6), squeeze=False)
    for (ax_bar, ax_line), (label, runs) in zip(axes.T, histories.items()):
        names = runs[0].tasks
        palette = [colors.get(n, "tab:grey") for n in names]
        final = torch.tensor([[h.task_weights[-1][n] for n in names] for h in runs])  # (seeds, tasks)
        ax_bar.bar(names, final.mean(0), yerr=final.std(0) if len(runs) > 1 else None, color=palette, capsize=3)
        ax_bar.scatter([i for i in range(len(names)) for _ in runs], final.T.flatten(), color="k", s=8, zorder=3)
        ax_bar.set_title(f"{label}: final weights (dots: seeds)", fontsize=9)
        ax_bar.tick_params(axis="x", labelsize=7)
        per_epoch = torch.tensor([[[e[n] for n in names] for e in h.task_weights] for h in runs]).mean(0)  # (E, tasks)
        for j, (name, color) in enumerate(zip(names, palette)):
            ax_line.plot(range(1, per_epoch.shape[0] + 1), per_epoch[:, j], marker=".", color=color, label=name)
        ax_line.set_title(f"{label}: weights per epoch (mean over seeds)", fontsize=9)
        ax_line.set_xlabel("epoch")
        ax_line.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_line.legend(fontsize=7)
        for ax in (ax_bar, ax_line):
            ax.axhline(0.0, color="grey", lw=0.6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
