"""avil.reproduce's figures: every axis that holds data is labelled, every
figure has a legend and says what its lines, bars and dots are, and the rows
and lines are the ones the data asks for."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.text import Text  # noqa: E402

import avil  # noqa: E402
from avil import reproduce  # noqa: E402

TASKS = ["target", "helpful", "noise", "harmful"]


def history(method, seed, epochs=6, tasks=TASKS, alphas=False, step=False, flat=False, weights_of=None, config=None):
    """A History of ``epochs`` epochs with seeded, plausible values: weights
    in [0, 4] that differ between tasks (all 1.0 with ``flat``; ``weights_of``
    (epoch, seed) -> {task: weight} where given), α where ``alphas`` (half
    the random weights, whatever ``weights_of`` gives), an
    α-step record where ``step``, ``config`` as the run's recorded config."""
    g = torch.Generator().manual_seed(1000 * seed + len(method))
    h = avil.History(method=method, target=tasks[0], tasks=list(tasks), seed=seed, config=dict(config or {}))
    for epoch in range(epochs):
        values = (4 * torch.rand(len(tasks), generator=g)).tolist()
        weights = {t: 1.0 if flat else w for t, w in zip(tasks, values)}
        if weights_of:
            weights = weights_of(epoch, seed)
        dev = 0.6 + 0.05 * epoch + 0.02 * float(torch.rand(1, generator=g))
        noise = torch.rand(3, generator=g).tolist()
        record = {"loss_init": 0.7 - 0.02 * epoch + 0.05 * noise[0], "loss_final": 0.6 - 0.02 * epoch - 0.05 * noise[1],
                  "iterations": 3 + epoch, "evaluations": 5 + epoch + int(6 * noise[2]),
                  "on_bound": tasks[:int(3 * noise[2])], "converged": True, "seconds": 1.0 + noise[0]}
        h.record(task_weights=weights, alphas={t: w / 2 for t, w in zip(tasks, values)} if alphas else {},
                 train_loss={t: 0.5 for t in tasks}, dev=dev, test=dev, seconds=10.0,
                 alpha_step=record if step else None)
    return h


def suite(seeds=(0, 1, 2)):
    """{method: [History per seed]}, as compare() returns it."""
    return {
        "single_task": [history("single_task", s, tasks=TASKS[:1], flat=True) for s in seeds],
        "uniform": [history("uniform", s, flat=True) for s in seeds],
        "diw": [history("diw", s) for s in seeds],
        "avil": [history("avil", s, alphas=True, step=True) for s in seeds],
        "avil (α carried over)": [history("avil (α carried over)", s, alphas=True, step=True) for s in seeds],
    }


def differences():
    """{suite: {row: PairedDifference.to_dict()}}; the second suite lacks a row and has one of its own."""
    def diff(shift, seeds=3):
        return reproduce.paired_difference([0.8 + shift + 0.01 * i for i in range(seeds)],
                                           [0.8 + 0.005 * i * i for i in range(seeds)]).to_dict()

    return {"toy": {"L-BFGS, [0, 4]": diff(0.02), "Adam ×10, unbounded": diff(-0.01), "L-BFGS, carried": diff(0.0),
                    "L-BFGS, radius 0.5": diff(0.01)},
            "text": {"L-BFGS, [0, 4]": diff(-0.02), "L-BFGS, carried": diff(0.005), "one seed only": diff(0.01, 1),
                     "Adam ×10, unbounded": diff(0.03)}}


def figures():
    histories = suite()
    return {
        "plot_dev": reproduce.plot_dev(histories, title="dev", metric="dev accuracy"),
        "plot_weights": reproduce.plot_weights(histories, title="how each method weights the tasks"),
        "plot_weights_one_method": reproduce.plot_weights({"avil": histories["avil"]}),
        "plot_alpha_step": reproduce.plot_alpha_step(histories, title="the α-step"),
        "plot_final_weights": reproduce.plot_final_weights(
            {m: histories[m] for m in ("avil", "avil (α carried over)")}, {"target": "tab:blue", "harmful": "tab:red"},
            title="final weights"),
        "plot_paired_differences": reproduce.plot_paired_differences(differences(), reference="single_task"),
    }


@pytest.fixture(scope="module")
def drawn():
    figs = figures()
    for fig in figs.values():
        fig.canvas.draw()
    yield figs
    for fig in figs.values():
        plt.close(fig)


def labelled(ax, axis):
    """The axis label a reader sees for ``ax``: its own, or that of an axes
    sharing that axis with it (a grid labels only its outer panels)."""
    shared = ax.get_shared_x_axes() if axis == "x" else ax.get_shared_y_axes()
    getter = "get_xlabel" if axis == "x" else "get_ylabel"
    return [getattr(a, getter)() for a in [ax, *shared.get_siblings(ax)] if getattr(a, getter)()]


def texts(fig):
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


NAMES = ["plot_dev", "plot_weights", "plot_weights_one_method", "plot_alpha_step", "plot_final_weights",
         "plot_paired_differences"]


@pytest.mark.parametrize("name", NAMES)
def test_every_axes_with_data_is_labelled(drawn, name):
    fig = drawn[name]
    with_data = [ax for ax in fig.axes if ax.has_data()]
    assert with_data and len(with_data) == len(fig.axes), f"{name}: an empty panel"
    for ax in with_data:
        assert labelled(ax, "x"), f"{name}: panel {ax.get_title()!r} has no x label"
        assert labelled(ax, "y"), f"{name}: panel {ax.get_title()!r} has no y label"


@pytest.mark.parametrize("name", NAMES)
def test_every_figure_has_a_legend_and_draws_what_it_says(drawn, name):
    fig = drawn[name]
    assert fig.legends or any(ax.get_legend() for ax in fig.axes), f"{name}: no legend"
    bands = [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]
    if not bands:
        assert not [t for t in texts(fig) if "min..max" in t or "band" in t], f"{name}: describes a band it lacks"


def test_axis_labels_carry_units(drawn):
    assert drawn["plot_dev"].axes[0].get_ylabel() == "target dev accuracy (%)"
    ylabels = {ax.get_ylabel() for ax in drawn["plot_alpha_step"].axes}
    assert ylabels == {"target dev loss (cross-entropy)", "dev-loss evaluations per α-step", "wall time (s)",
                       "α on a bound (count of K = 4)"}  # K: the run's number of α, one per task
    assert {ax.get_xlabel() for ax in drawn["plot_paired_differences"].axes} == {"test − single_task (points)"}


def test_plot_dev_legend_follows_the_dict_and_states_the_mean():
    histories = suite()
    order = ["diw", "single_task", "avil", "uniform"]
    fig = reproduce.plot_dev({m: histories[m] for m in order})
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == order
    assert legend.get_title().get_text() == "mean over 3 seeds\nband: min–max over seeds"
    line = fig.axes[0].get_lines()[order.index("avil")]
    expected = 100 * torch.tensor([h.dev for h in histories["avil"]]).mean(0)
    assert torch.allclose(torch.tensor(line.get_ydata(), dtype=torch.float32), expected)
    plt.close(fig)


def test_plot_weights_draws_a_panel_per_method_quantity_and_task_with_each_seed():
    histories = suite(seeds=(0, 1))
    fig = reproduce.plot_weights(histories)
    # single_task and uniform have no weights that vary: no row; diw has weights, avil weights and α
    rows = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    # a method without an α-step records weights of its own kind, named by the method: no loss scale claimed
    assert rows == ["diw:\nmean example\nweight (KMM)", "avil:\ntask weight\n(loss scale)", "avil:\nα\n(mixing weight)",
                    "avil (α carried\nover):\ntask weight\n(loss scale)",
                    "avil (α carried\nover):\nα\n(mixing weight)"]  # long labels wrapped
    assert len(fig.axes) == 5 * len(TASKS)
    assert [ax.get_title() for ax in fig.axes[:len(TASKS)]] == TASKS
    alpha_noise = fig.axes[2 * len(TASKS) + TASKS.index("noise")]  # avil's α row, the noise column
    seed_lines, mean = alpha_noise.get_lines()[:2], alpha_noise.get_lines()[2]
    per_seed = torch.tensor([[e["noise"] for e in h.alphas] for h in histories["avil"]])  # (seeds, epochs)
    for line, seed in zip(seed_lines, per_seed):
        assert torch.allclose(torch.tensor(line.get_ydata(), dtype=torch.float32), seed)
    assert torch.allclose(torch.tensor(mean.get_ydata(), dtype=torch.float32), per_seed.mean(0))
    assert mean.get_linewidth() > seed_lines[0].get_linewidth()
    plt.close(fig)


def test_plot_weights_shares_y_within_a_row_only():
    fig = reproduce.plot_weights(suite(seeds=(0,)))
    first, second = fig.axes[0], fig.axes[len(TASKS)]
    assert first.get_shared_y_axes().joined(first, fig.axes[1])
    assert not first.get_shared_y_axes().joined(first, second)
    plt.close(fig)


def test_plot_weights_and_alpha_step_return_none_without_data():
    histories = {"uniform": [history("uniform", 0, flat=True)]}
    assert reproduce.plot_weights(histories) is None
    assert reproduce.plot_alpha_step(histories) is None


def test_plot_final_weights_states_bars_error_bars_and_dots(drawn):
    fig = drawn["plot_final_weights"]
    entries = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert {"bar: mean over 3 seeds", "error bar: min to max over seeds", "dot: one seed"} <= set(entries)
    assert set(TASKS) <= set(entries)


def test_paired_differences_label_every_row_top_to_bottom(drawn):
    fig = drawn["plot_paired_differences"]
    first, second = fig.axes
    expected = ["L-BFGS, [0, 4]", "Adam ×10, unbounded", "L-BFGS, carried", "L-BFGS, radius 0.5", "one seed only"]
    shown = [t for t in first.get_yticklabels() if t.get_text()]
    top_to_bottom = sorted(shown, key=lambda t: -t.get_window_extent().y0)
    assert [t.get_text() for t in top_to_bottom] == expected
    assert not [t for t in second.get_yticklabels() if t.get_visible() and t.get_text()]  # labels once, shared
    entries = [t.get_text() for t in fig.legends[0].get_texts()]
    assert entries == ["mean and 95 % CI", "one seed", "mean (one seed: no CI)"]
    assert "not run" in texts(fig)  # toy lacks "one seed only"


def test_paired_differences_draw_the_mean_its_interval_and_each_seed():
    columns = differences()
    fig = reproduce.plot_paired_differences({"toy": columns["toy"]}, scale=100.0)
    ax = fig.axes[0]
    d = columns["toy"]["L-BFGS, carried"]
    row = list(columns["toy"]).index("L-BFGS, carried")
    dots = ax.collections[2 * row].get_offsets()  # scatter then error bar's line collection, per row
    assert dots[:, 0].tolist() == pytest.approx([100 * x for x in d["differences"]])
    assert dots[:, 1].tolist() == pytest.approx([row + 0.22] * len(d["differences"]))  # just under the interval
    bar = ax.collections[2 * row + 1].get_segments()[0]  # the CI's horizontal segment
    assert [bar[0][0], bar[1][0]] == pytest.approx([100 * (d["mean"] - d["half_width"]),
                                                    100 * (d["mean"] + d["half_width"])])
    plt.close(fig)


def test_paired_differences_refuse_empty_columns():
    with pytest.raises(ValueError, match="columns is empty"):
        reproduce.plot_paired_differences({"toy": {}})


BOUNDS = {"weight_min": 0.05, "weight_max": 4.0, "alpha_min": 0.0, "alpha_max": 4.0}


def bound_lines(ax):
    """The y values of the bound lines drawn on ``ax`` (thin dashed grey, BOUND_LINE)."""
    return sorted(line.get_ydata()[0] for line in ax.get_lines() if line.get_color() == "0.45")


def test_plot_weights_draws_the_bounds_only_of_the_method_they_hold_for():
    histories = {"diw": [history("diw", s, config=BOUNDS) for s in (0, 1)],  # same config keys, but no α-step
                 "avil": [history("avil", s, alphas=True, step=True, config=BOUNDS) for s in (0, 1)]}
    fig = reproduce.plot_weights(histories)
    diw_row, weight_row, alpha_row = (fig.axes[r * len(TASKS):(r + 1) * len(TASKS)] for r in range(3))
    assert all(bound_lines(ax) == [] for ax in diw_row)  # diw's weights are not clipped to [weight_min, weight_max]
    assert all(bound_lines(ax) == [0.05, 4.0] for ax in weight_row)
    # α here stays in [0, 2]: alpha_max = 4 is not drawn, so that it does not squeeze α's row
    assert all(bound_lines(ax) == [0.0] for ax in alpha_row)
    entries = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "bound (weights in [0.05, 4]; α in [0, 4])" in entries  # named once, with the values
    plt.close(fig)
    fig = reproduce.plot_weights(histories, show_bounds=False)
    assert not any(bound_lines(ax) for ax in fig.axes)
    plt.close(fig)


def test_plot_weights_keeps_float_noise_flat_and_names_constant_panels():
    def near_one(epoch, seed):  # weights 1 ± 0.005, as diw's KMM weights on the toy suite; target exactly 1
        return {t: 1.0 if t == "target" else 1.0 + 0.005 * ((epoch + seed + i) % 3 - 1) for i, t in enumerate(TASKS)}

    fig = reproduce.plot_weights({"diw": [history("diw", s, weights_of=near_one) for s in (0, 1)]},
                                 weight_labels={"diw": "mean example weight"})
    low, high = fig.axes[0].get_ylim()
    assert high - low >= reproduce.weight_plots.MIN_SPAN
    assert fig.axes[0].get_ylabel() == "diw:\nmean example weight"
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert notes == ["constant at 1\nin every seed and epoch"]  # the target's panel says so ...
    assert not fig.axes[1].texts  # ... a panel whose weights move does not
    plt.close(fig)


def test_plot_weights_drops_rows_where_every_curve_is_constant_only_when_asked():
    def pinned(epoch, seed):  # the target pinned at 1, every auxiliary on the floor
        return {t: 1.0 if t == "target" else 0.05 for t in TASKS}

    runs = [history("avil", s, alphas=True, step=True, weights_of=pinned, config=BOUNDS) for s in (0, 1)]
    fig = reproduce.plot_weights({"avil": runs})
    assert len(fig.axes) == 2 * len(TASKS)
    assert [t.get_text() for t in fig.axes[1].texts] == ["constant at 0.05 (= weight_min)\nin every seed and epoch"]
    plt.close(fig)
    fig = reproduce.plot_weights({"avil": runs}, drop_constant_rows=True)
    assert len(fig.axes) == len(TASKS)  # only α's row is left
    assert fig.axes[0].get_ylabel() == "avil:\nα\n(mixing weight)"
    assert "not drawn, every curve constant: avil (task weights)" in fig._suptitle.get_text()
    plt.close(fig)


def test_plot_dev_fits_later_epochs_names_what_it_leaves_off_and_bands_the_seeds():
    histories = suite()
    for runs in histories.values():  # a first epoch far below the rest, as MultiMNIST's
        for h in runs:
            h.dev[0] = 0.2
    fig = reproduce.plot_dev(histories)
    ax = fig.axes[0]
    later = 100 * torch.tensor([h.dev[1:] for runs in histories.values() for h in runs])
    low, high = ax.get_ylim()
    assert 20.0 < low <= float(later.min()) and high >= float(later.max())
    note = "".join(t.get_text() for t in ax.texts)
    assert "off the axis (epoch 1 means, %): " in note
    assert all(f"{label} 20.0" in note for label in histories)  # each mean left off, by name
    band = ax.collections[list(histories).index("avil")].get_paths()[0].vertices[:, 1]  # min–max polygon
    dev = 100 * torch.tensor([h.dev for h in histories["avil"]])  # (seeds, epochs)
    assert float(band.min()) == pytest.approx(float(dev.min())) and float(band.max()) == pytest.approx(float(dev.max()))
    styles = {(line.get_linestyle(), line.get_marker()) for line in ax.get_lines()}
    assert len(styles) == len(histories)  # no two lines differ by colour alone
    plt.close(fig)
    fig = reproduce.plot_dev(histories, zoom_from_epoch=None)
    assert fig.axes[0].get_ylim()[0] < 20.0 and not fig.axes[0].texts
    plt.close(fig)


def test_plot_dev_names_only_the_means_it_leaves_off_and_bands_only_the_labels_asked():
    histories = suite()
    for label, runs in histories.items():  # only avil's first epoch far below the rest
        for h in runs:
            h.dev[0] = 0.05 if label == "avil" else h.dev[1]
    fig = reproduce.plot_dev(histories, spread=["avil", "single_task"])
    ax = fig.axes[0]
    note = "".join(t.get_text() for t in ax.texts)
    assert "avil 5.0" in note and not any(f"{label} " in note for label in histories if label != "avil")
    assert len(ax.collections) == 2  # two bands, not one per label
    plt.close(fig)


def test_plot_alpha_step_counts_bounds_out_of_k():
    fig = reproduce.plot_alpha_step({"avil": [history("avil", s, alphas=True, step=True, config=BOUNDS)
                                              for s in (0, 1)]})
    ax_bound = fig.axes[3]
    assert ax_bound.get_ylim() == pytest.approx((-0.3, len(TASKS) + 0.3))  # 0 to K, K = one α per task
    assert "bound of [0, 4]" in ax_bound.get_title()
    assert "α_init: the α the solver starts from" in fig.axes[0].get_title()
    plt.close(fig)


def test_plot_final_weights_error_bars_span_the_seeds_and_stay_above_the_floor():
    def final(epoch, seed):  # two seeds on the floor, one far above: ± 1 std would reach below 0
        return {t: 1.0 if t == "target" else 0.05 if seed < 2 or t != "noise" else 1.5 for t in TASKS}

    runs = [history("avil", s, alphas=True, step=True, weights_of=final, config=BOUNDS) for s in (0, 1, 2)]
    fig = reproduce.plot_final_weights({"avil": runs})
    ax_bar, ax_line = fig.axes[0], fig.axes[1]
    bars = [c for c in ax_bar.collections if c.__class__.__name__ == "LineCollection"][0].get_segments()
    noise = bars[TASKS.index("noise")]
    assert sorted(y for _, y in noise) == pytest.approx([0.05, 1.5])  # min to max over seeds
    assert min(y for segment in bars for _, y in segment) >= 0.05 - 1e-6
    assert bound_lines(ax_bar) == [0.05] and bound_lines(ax_line)[0] == 0.05  # the floor, drawn
    colours = {p.get_facecolor()[:3] for p in ax_bar.patches}
    assert len(colours) == len(TASKS)  # one colour per task by default
    plt.close(fig)


def test_plot_final_weights_orders_bars_by_measured_effect_and_names_each_class():
    runs = [history("avil", s, alphas=True, step=True, config=BOUNDS) for s in (0, 1, 2)]
    effects = {"helpful": reproduce.paired_difference([0.90, 0.91, 0.92], [0.80, 0.80, 0.81]),
               "noise": reproduce.paired_difference([0.80, 0.82, 0.79], [0.80, 0.80, 0.81]),
               "harmful": reproduce.paired_difference([0.60, 0.61, 0.62], [0.80, 0.80, 0.81])}
    fig = reproduce.plot_final_weights({"avil": runs}, effects=effects)
    ax_bar = fig.axes[0]
    assert [t.get_text() for t in ax_bar.get_xticklabels()] == ["target", "helpful", "noise", "harmful"]
    assert [t.get_text().split("\n")[0] for t in ax_bar.texts] == ["target", "helpful", "no effect", "harmful"]
    assert ax_bar.texts[1].get_text() == f"helpful\n{100 * effects['helpful'].mean:+.1f}"
    plt.close(fig)
