"""The static baseline (fixed auxiliary weights) and the search that chooses them."""
import pytest

import avil
from avil import reproduce
from avil.reproduce.search import static_search
from avil.tasks import toy

SMALL = dict(n_target=60, n_aux=120, n_dev=60, n_test=120)


def make_run(seed):
    return toy.make_encoder(seed), toy.make_tasks(seed, **SMALL)


CONFIG = avil.FitConfig(epochs=2, progress=False)


def fit(method, **config):
    encoder, tasks = make_run(0)
    return avil.fit(encoder, tasks, toy.TARGET, method, avil.FitConfig(epochs=2, progress=False, **config))


def test_static_with_every_weight_one_is_uniform_exactly():
    uniform, static = fit("uniform"), fit("static", static_weights={"noise": 1.0})
    assert (static.dev, static.test_per_epoch, static.train_loss) == (uniform.dev, uniform.test_per_epoch,
                                                                     uniform.train_loss)


def test_a_zero_weight_turns_an_auxiliary_off_and_the_weights_are_its_loss_scales():
    h = fit("static", static_weights={"noise": 0.0, "harmful": 0.5})
    assert "noise" not in h.train_loss[0] and "harmful" in h.train_loss[0]
    assert h.task_weights[-1] == {"target": 1.0, "same_rule": 1.0, "noise": 0.0, "harmful": 0.5}
    assert fit("static", static_weights={"harmful": 0.5}).dev != fit("uniform").dev


@pytest.mark.parametrize("weights, message", [
    ({"nosie": 1.0}, r"names \['nosie'\], which are not among this run's auxiliaries.*Fix"),
    ({"target": 0.5}, r"names \['target'\], which is not among this run's auxiliaries.*Fix"),
])
def test_weights_for_unknown_tasks_or_the_target_are_refused(weights, message):
    with pytest.raises(ValueError, match=message):
        fit("static", static_weights=weights)


@pytest.mark.parametrize("weights", [{"noise": -1.0}, {"noise": float("inf")}, ["noise"], {"noise": True}])
def test_bad_static_weights_are_refused_with_the_fix(weights):
    with pytest.raises(ValueError, match=r"FitConfig.static_weights = .*must be a dict.*Fix"):
        avil.FitConfig(static_weights=weights).validate()


def test_the_search_is_coordinate_wise_on_the_dev_metric_and_never_reads_the_test_set():
    search = static_search(make_run, toy.TARGET, ["same_rule", "noise"], [0, 1], CONFIG, grid=(0.0, 1.0, 2.0),
                           progress=False)
    assert search.runs_per_seed == 1 + 2 * 2  # the start, then two other values per auxiliary
    for seed, runs in search.runs.items():
        start, *rest = runs
        assert start[0] == {"same_rule": 1.0, "noise": 1.0}
        first = [start] + [r for r in rest if r[0]["noise"] == 1.0][:2]  # the sweep over same_rule
        chosen_first = max(first, key=lambda r: (max(r[1].dev), r[0]["same_rule"] == 1.0))[0]["same_rule"]
        assert search.chosen[seed]["same_rule"] == chosen_first
        second = [r for r in runs if r[0]["same_rule"] == chosen_first]
        assert search.chosen[seed] == max(second, key=lambda r: (max(r[1].dev), r[0]["noise"] == 1.0))[0]
    assert [h.seed for h in search.best] == [0, 1]
    assert all(h.config["static_weights"] == search.chosen[h.seed] for h in search.best)


def test_the_search_reuses_the_uniform_runs_it_is_given():
    uniform = reproduce.compare(make_run, toy.TARGET, ["uniform"], [0], CONFIG, progress=False)["uniform"]
    search = static_search(make_run, toy.TARGET, ["noise"], [0], CONFIG, grid=(0.0, 1.0), progress=False,
                           start={0: uniform[0]})
    assert search.runs[0][0][1] is uniform[0] and search.runs_per_seed == 2
    assert search.seconds(0) == sum(sum(h.epoch_seconds) for _, h in search.runs[0])


def test_a_schedule_counts_only_the_steps_static_takes(monkeypatch):
    from avil import optim

    rates = []
    step = optim.Stepper.step

    def spy(self):
        rates.append(self.lr)
        step(self)

    monkeypatch.setattr(optim.Stepper, "step", spy)
    h = fit("static", static_weights={"same_rule": 0.0, "noise": 0.0, "harmful": 0.0}, lr_scheduler_type="linear")
    per_epoch = len(rates) // 2  # the target's steps only
    assert [rates[per_epoch - 1], rates[-1]] == pytest.approx([e["model"] for e in h.lr])
    assert rates[-1] > 0  # the schedule ends at the run's last step, not at the skipped slots'
