"""Behaviour of the methods on the toy suite, which has known relatedness."""
import pytest
from torch.optim.optimizer import register_optimizer_step_post_hook

import avil
from avil.tasks import toy as toy_suite

SEEDS = (0, 1, 2)
EPOCHS = 15


def run(method, seed, **config):
    encoder, tasks = toy_suite.make_encoder(seed), toy_suite.make_tasks(seed)
    cfg = avil.FitConfig(**{"epochs": EPOCHS, "seed": seed, "progress": False, **config})
    return avil.fit(encoder, tasks, target=toy_suite.TARGET, method=method, config=cfg)


@pytest.fixture(scope="module")
def toy_results():
    return {m: [run(m, s) for s in SEEDS] for m in ("single_task", "uniform", "avil")}


def mean(values):
    return sum(values) / len(values)


def test_toy_suite_contains_negative_transfer(toy_results):
    single = mean([h.test for h in toy_results["single_task"]])
    uniform = mean([h.test for h in toy_results["uniform"]])
    assert uniform < single - 0.05, (uniform, single)


def test_avil_beats_uniform_on_the_target(toy_results):
    uniform = mean([h.test for h in toy_results["uniform"]])
    alpha_vil = mean([h.test for h in toy_results["avil"]])
    assert alpha_vil > uniform + 0.05, (alpha_vil, uniform)


def test_avil_weights_the_same_rule_auxiliary_above_noise_and_harmful(toy_results):
    final = {name: mean([h.task_weights[-1][name] for h in toy_results["avil"]])
             for name in ("same_rule", "noise", "harmful")}
    assert final["same_rule"] > final["noise"], final
    assert final["same_rule"] > final["harmful"], final


def test_alpha_moves_away_from_one_with_the_default_alpha_steps(toy_results):
    first_epoch = toy_results["avil"][0].alphas[0]
    assert max(abs(a - 1.0) for a in first_epoch.values()) > 0.1, first_epoch


def test_avil_records_weights_and_alphas_per_epoch(toy_results):
    h = toy_results["avil"][0]
    assert len(h.alphas) == len(h.task_weights) == len(h.dev) == EPOCHS
    # the paper's additive update, kept inside the weight bounds: w_e = clip(w_{e-1} + (α_e − 1))
    cfg = h.config
    for prev, now, alphas in zip(h.task_weights, h.task_weights[1:], h.alphas[1:]):
        for name in now:
            expected = min(max(prev[name] + alphas[name] - 1.0, cfg["weight_min"]), cfg["weight_max"])
            assert now[name] == pytest.approx(expected, abs=1e-5)
    assert len(h.alpha_step) == EPOCHS and all(s["loss_final"] <= s["loss_init"] for s in h.alpha_step)
    assert toy_results["uniform"][0].alphas == []


def test_test_metric_is_taken_at_the_best_dev_epoch(toy_results):
    h = toy_results["uniform"][1]
    best = max(range(len(h.dev)), key=lambda i: (h.dev[i], -i))
    assert h.best_epoch == best + 1 and h.test == h.test_per_epoch[best]


@pytest.mark.parametrize("method", ["single_task", "uniform", "avil"])
def test_same_seed_same_history(method):
    assert run(method, 3, epochs=2) == run(method, 3, epochs=2)


def test_single_task_takes_as_many_optimizer_steps_as_uniform(toy):
    steps = {}
    for method in ("single_task", "uniform"):
        encoder, tasks = toy()
        counter = []
        handle = register_optimizer_step_post_hook(lambda *a: counter.append(1))
        try:
            avil.fit(encoder, tasks, toy_suite.TARGET, method,
                     avil.FitConfig(epochs=1, progress=False))
        finally:
            handle.remove()
        steps[method] = len(counter)
    assert steps["single_task"] == steps["uniform"] > 100


def test_avil_deltas_are_not_zero(toy):
    # θ0 must be a copy of the live buffer: a view would make every δ zero and
    # the merged θ0 + Σ δ_t equal to θ0.
    encoder, tasks = toy()
    before = [p.detach().clone() for p in encoder.parameters()]
    h = avil.fit(encoder, tasks, toy_suite.TARGET, "avil",
                 avil.FitConfig(epochs=1, alpha_solver="adam", alpha_steps=0, progress=False))
    assert h.alphas[0] == {name: 1.0 for name in h.tasks}
    moved = [(p.detach() - b).abs().max().item() for p, b in zip(encoder.parameters(), before)]
    assert min(moved) > 1e-3, moved


@pytest.mark.parametrize("update, expected", [
    ("additive", lambda w, a, e: w + a - 1), ("multiplicative", lambda w, a, e: w * a),
    ("replace", lambda w, a, e: a), ("average", lambda w, a, e: a if e == 0 else w + (a - w) / (e + 1)),
])
@pytest.mark.parametrize("pinned", [False, True])
def test_weight_updates(update, expected, pinned):
    bounds = dict(weight_min=0.05, weight_max=4.0)
    h = run("avil", 0, epochs=3, weight_update=update, pin_target_weight=pinned, **bounds)

    def clip(w):
        return min(max(w, bounds["weight_min"]), bounds["weight_max"])

    for name in h.tasks:
        w = 1.0
        for epoch in range(3):
            w = 1.0 if pinned and name == h.target else clip(expected(w, h.alphas[epoch][name], epoch))
            assert h.task_weights[epoch][name] == pytest.approx(w, abs=1e-5), (name, epoch)
    if update == "average":  # the final weight is the mean α (where no bound was hit)
        for name in h.tasks:
            if name != h.target or not pinned:
                alphas = [a[name] for a in h.alphas]
                assert h.task_weights[-1][name] == pytest.approx(clip(sum(alphas) / 3), abs=0.06)


def test_the_contribution_rule_averages_each_tasks_share_of_the_ablations_loss_rise():
    h = run("avil", 0, epochs=3, weight_update="contribution")
    means = {name: 0.0 for name in h.tasks}
    for epoch, step in enumerate(h.alpha_step):  # the rule computes (and records) the ablation itself
        rises = {n: max(0.0, step["loss_without"][n] - step["loss_final"]) for n in h.tasks}
        scores = {n: len(rises) * r / sum(rises.values()) for n, r in rises.items()}
        for name in h.tasks:
            means[name] += (scores[name] - means[name]) / (epoch + 1)
            assert h.task_weights[epoch][name] == pytest.approx(min(max(means[name], 0.05), 4.0), abs=1e-5)


def test_task_weights_are_loss_scales_bounded_on_both_sides():
    from avil.methods.weight_rules import updated_weights

    config = avil.FitConfig(weight_min=0.1, weight_max=3.0, weight_update="replace")
    alphas = {"a": -22.8, "b": 0.0, "c": 1.5, "d": 14.5}
    assert updated_weights(dict.fromkeys(alphas, 1.0), alphas, 0, config, "a") == \
        {"a": 0.1, "b": 0.1, "c": 1.5, "d": 3.0}


def test_history_json_round_trip(tmp_path, toy_results):
    h = toy_results["avil"][0]
    h.to_json(tmp_path / "h.json")
    back = avil.History.from_json(tmp_path / "h.json")
    assert back == h and back.epoch_seconds == h.epoch_seconds


def test_dict_inputs_work(toy):
    """x may be a dict of tensors (as tokenised text is)."""
    from torch import nn
    from torch.utils.data import Dataset

    class DictData(Dataset):
        def __init__(self, base):
            self.base = base

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            x, y = self.base[i]
            return {"features": x}, y

    class DictEncoder(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x["features"])

    encoder, tasks = toy()
    for t in tasks:
        t.train, t.dev, t.test = DictData(t.train), DictData(t.dev), DictData(t.test)
    h = avil.fit(DictEncoder(encoder), tasks[:2], toy_suite.TARGET, "avil",
                 avil.FitConfig(epochs=1, progress=False))
    assert h.epochs == 1 and 0 <= h.test <= 1


def test_alpha_carried_over_between_epochs():
    # alpha_init="weights" + weight_update="replace": each epoch's α-tuning starts
    # from the weights the previous one left. One Adam step moves every α by
    # exactly alpha_lr (its first step is lr·sign(g)), so α_e = w_{e-1} ± 0.3 (inside the weight bounds).
    h = run("avil", 0, epochs=3, alpha_solver="adam", alpha_steps=1, alpha_lr=0.3, alpha_min=None,
            alpha_init="weights", weight_update="replace")
    previous = {name: 1.0 for name in h.tasks}
    for alphas, weights in zip(h.alphas, h.task_weights):
        for name in h.tasks:
            assert abs(alphas[name] - previous[name]) == pytest.approx(0.3, abs=1e-4), (name, alphas, previous)
            assert weights[name] == alphas[name]
        previous = weights
    assert any(abs(w - 1.0) > 0.5 for w in h.task_weights[-1].values())  # so starting from 1 would differ


def test_default_avil_beats_single_task_in_every_seed(toy_results):
    # The α-step's defaults were chosen in notebooks/03_alpha_tuning.ipynb; on the
    # toy suite they must beat training the target alone in every seed, by ≥ 3 points.
    gains = [a.test - s.test for a, s in zip(toy_results["avil"], toy_results["single_task"])]
    assert min(gains) > 0 and mean(gains) >= 0.03, gains
