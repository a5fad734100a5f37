"""avil.rank_auxiliaries and its readouts; the synthetic suites they are measured on."""
import pytest
import torch

import avil
from avil.ranking import READOUTS, auxiliary_scores, rank_auxiliaries, ties
from avil.tasks import synthetic, toy


def history(weights, alphas, losses_without=None, gradients=None):
    """A History of the suite t (target) + a, b, c over len(weights) epochs."""
    h = avil.History(method="avil", target="t", tasks=["t", "a", "b", "c"], seed=0)
    for e, (w, a) in enumerate(zip(weights, alphas)):
        step = {"loss_init": 1.0, "loss_final": 0.5, "iterations": 1, "evaluations": 2, "on_bound": [],
                "converged": True, "seconds": 0.1, "gradient_init": (gradients or [{}] * len(weights))[e] or
                dict.fromkeys(w, 0.0)}
        if losses_without:
            step["loss_without"] = losses_without[e]
        h.record(task_weights=w, alphas=a, train_loss={}, dev=0.5, test=0.5, seconds=1.0, alpha_step=step)
    return h


W = [{"t": 1, "a": 2.0, "b": 0.05, "c": 1.0}, {"t": 1, "a": 1.0, "b": 0.05, "c": 3.0}]
A = [{"t": 1, "a": 3.0, "b": 0.0, "c": 0.0}, {"t": 1, "a": 1.0, "b": 0.0, "c": 2.0}]
WITHOUT = [{"t": 0.875, "a": 0.75, "b": 0.5, "c": 0.5}, {"t": 0.875, "a": 0.625, "b": 0.5, "c": 0.875}]
GRADIENTS = [{"t": 0, "a": -0.2, "b": 0.4, "c": 0.0}, {"t": 0, "a": -0.4, "b": 0.2, "c": 0.1}]


@pytest.mark.parametrize("readout, expected", [
    ("final_weight", {"a": 1.0, "b": 0.05, "c": 3.0}),
    ("mean_weight", {"a": 1.5, "b": 0.05, "c": 2.0}),
    ("mean_alpha", {"a": 2.0, "b": 0.0, "c": 1.0}),
    ("mean_ablation", {"a": 0.1875, "b": 0.0, "c": 0.1875}),  # mean of loss_without − loss_final
    ("mean_gradient", {"a": 0.3, "b": -0.3, "c": -0.05}),  # mean of −∂L/∂α at α_init
])
def test_each_readout_is_what_its_name_says(readout, expected):
    scores = auxiliary_scores(history(W, A, WITHOUT, GRADIENTS), readout)
    assert scores == pytest.approx(expected) and "t" not in scores  # the target is not ranked


def test_rank_auxiliaries_puts_the_most_useful_first_and_reports_ties():
    ranking = rank_auxiliaries(history(W, A, WITHOUT, GRADIENTS), "mean_ablation")
    assert ranking == [("a", 0.1875), ("c", 0.1875), ("b", 0.0)]  # a tie keeps the task list's order
    assert ties(ranking) == [["a", "c"], ["b"]]
    assert rank_auxiliaries(history(W, A))[0] == ("c", 3.0)  # the default readout: the final weights


def test_readouts_that_need_what_a_run_did_not_record_say_so():
    with pytest.raises(ValueError, match=r"recorded no per-delta ablation.*alpha_ablation=True"):
        auxiliary_scores(history(W, A), "mean_ablation")
    uniform = avil.History(method="uniform", target="t", tasks=["t", "a"], seed=0)
    uniform.record(task_weights={"t": 1, "a": 1}, alphas={}, train_loss={}, dev=0.5, test=0.5, seconds=1.0)
    with pytest.raises(ValueError, match=r"has no α-step.*method='avil'"):
        auxiliary_scores(uniform, "mean_alpha")
    with pytest.raises(ValueError, match=r"readout 'best': must be one of"):
        auxiliary_scores(history(W, A), "best")
    assert set(READOUTS) == {"final_weight", "mean_weight", "mean_alpha", "mean_ablation", "mean_gradient"}


def test_a_real_run_ranks_the_toy_suites_helpful_auxiliary_above_the_harmful_regression():
    h = avil.fit(toy.make_encoder(0), toy.make_tasks(0, n_aux=400, n_dev=200, n_test=200), toy.TARGET, "avil",
                 avil.FitConfig(epochs=4, progress=False, alpha_ablation=True))
    for readout in ("final_weight", "mean_alpha", "mean_ablation"):
        scores = auxiliary_scores(h, readout)
        assert scores["same_rule"] > scores["harmful"], (readout, scores)


def test_synthetic_suites_are_drawn_from_their_seed_and_hold_the_twin_and_three_other_roles():
    first, again, other = synthetic.make_suite(3), synthetic.make_suite(3), synthetic.make_suite(4)
    assert first.roles == again.roles and "twin" in first.roles and len(first.roles) == 4
    assert set(first.roles.values()) <= set(synthetic.ROLES)
    (_, tasks_a), (_, tasks_b) = first.make_run(0), again.make_run(0)
    assert all(torch.equal(a.train.tensors[0], b.train.tensors[0]) for a, b in zip(tasks_a, tasks_b))
    assert (first.dim, first.classes, first.roles) != (other.dim, other.classes, other.roles)


def test_a_synthetic_seed_varies_the_initialisation_not_the_data_nor_the_global_rng():
    suite = synthetic.make_suite(0)
    state = torch.get_rng_state()
    (enc0, tasks0), (enc1, tasks1) = suite.make_run(0), suite.make_run(1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(tasks0[0].train.tensors[0], tasks1[0].train.tensors[0])
    assert not torch.equal(next(enc0.parameters()), next(enc1.parameters()))
    assert not torch.equal(tasks0[0].head.weight, tasks1[0].head.weight)


def test_the_shuffled_role_holds_the_targets_own_inputs_with_permuted_labels():
    suite = next(s for s in (synthetic.make_suite(k) for k in range(20)) if "shuffled" in s.roles)
    _, tasks = suite.make_run(0)
    target, shuffled = tasks[0], next(t for t in tasks if t.name == "shuffled")
    assert torch.equal(target.train.tensors[0], shuffled.train.tensors[0])
    assert sorted(target.train.tensors[1].tolist()) == sorted(shuffled.train.tensors[1].tolist())
    assert not torch.equal(target.train.tensors[1], shuffled.train.tensors[1])
