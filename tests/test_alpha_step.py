"""The α-step solver (avil/alpha_step.py): it reaches known optima, respects
its trust region, is deterministic, and αVIL's objective is the dev loss at
θ0 + Δᵀα."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import avil
from avil.alpha_step import solve
from avil.flat import FlatParameters
from avil.methods import AlphaVIL
from avil.models import MultiTaskModel

NAMES = ["a", "b", "c"]


def quadratic(optimum, curvature):
    """F(α) = ½ (α − α*)ᵀ A (α − α*): (value, gradient), counting calls."""
    optimum = torch.tensor(optimum, dtype=torch.float64)
    a = torch.tensor(curvature, dtype=torch.float64)

    def objective(alphas):
        d = alphas.double() - optimum
        return float(0.5 * d @ a @ d), (a @ d).float()

    return objective


# An ill-conditioned, coupled A: the solver must handle both.
CURVATURE = [[4.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 0.2]]


def test_lbfgs_reaches_the_analytic_optimum():
    optimum = [2.5, -0.7, 6.0]
    alphas, step = solve(quadratic(optimum, CURVATURE), torch.ones(3), NAMES, alpha_min=None, alpha_max=None)
    assert torch.allclose(alphas.double(), torch.tensor(optimum, dtype=torch.float64), atol=1e-3), alphas
    assert step.converged and step.on_bound == [] and step.loss_final < 1e-6
    assert step.loss_init == pytest.approx(float(quadratic(optimum, CURVATURE)(torch.ones(3))[0]))
    assert step.evaluations >= step.iterations >= 1


def test_lbfgs_respects_bounds_and_reports_them():
    # Diagonal A: the box-constrained optimum is the clipped unconstrained one.
    diagonal = [[1.0, 0, 0], [0, 3.0, 0], [0, 0, 0.5]]
    alphas, step = solve(quadratic([-2.0, 1.3, 9.0], diagonal), torch.ones(3), NAMES, alpha_min=0.0, alpha_max=4.0)
    assert torch.allclose(alphas, torch.tensor([0.0, 1.3, 4.0]), atol=1e-3), alphas
    assert step.on_bound == ["a", "c"]


def test_proximal_penalty_has_its_closed_form_optimum():
    # argmin ½(α−α*)ᵀA(α−α*) + λ/2‖α−α0‖² = (A + λI)⁻¹ (A α* + λ α0)
    optimum, start, lam = torch.tensor([3.0, -1.0, 5.0]), torch.tensor([1.0, 1.0, 1.0]), 0.7
    a = torch.tensor(CURVATURE)
    expected = torch.linalg.solve(a + lam * torch.eye(3), a @ optimum + lam * start)
    alphas, _ = solve(quadratic(optimum.tolist(), CURVATURE), start, NAMES, alpha_min=None, alpha_max=None,
                      penalty=lam)
    assert torch.allclose(alphas, expected, atol=1e-3), (alphas, expected)


@pytest.mark.parametrize("solver", ["lbfgs", "adam", "sgd"])
def test_solvers_are_deterministic_and_stay_in_the_box(solver):
    runs = [solve(quadratic([7.0, -3.0, 0.5], CURVATURE), torch.ones(3), NAMES, solver=solver,
                  alpha_min=0.0, alpha_max=2.0, lr=0.5) for _ in range(2)]
    (a1, s1), (a2, s2) = runs
    assert torch.equal(a1, a2) and (s1.loss_final, s1.evaluations) == (s2.loss_final, s2.evaluations)
    assert ((a1 >= 0.0) & (a1 <= 2.0)).all(), a1
    assert s1.loss_final < s1.loss_init


def test_first_order_steps_are_the_papers_sketch():
    # One Adam step moves every α by exactly lr (its first step is lr · sign(g)).
    alphas, step = solve(quadratic([5.0, -5.0, 5.0], [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), torch.ones(3), NAMES,
                         solver="adam",
                         alpha_min=None, alpha_max=None, steps=1, lr=0.3)
    assert torch.allclose(alphas, torch.tensor([1.3, 0.7, 1.3]), atol=1e-6)
    assert (step.iterations, step.evaluations, step.converged) == (1, 2, False)


def test_a_non_finite_dev_loss_stops_with_the_epoch_and_split_named():
    objective_calls = []

    def objective(alphas):
        objective_calls.append(alphas)
        return math.nan, torch.zeros(3)

    with pytest.raises(ValueError, match="non-finite"):
        solve(objective, torch.ones(3), NAMES)


# -- αVIL's objective ---------------------------------------------------------

def linear_suite(seed=0, n=256, dim=6):
    """Three regression tasks sharing one linear map (no head parameters): the
    target's dev loss at θ0 + Δᵀα is quadratic in α, with a least-squares optimum."""
    gen = torch.Generator().manual_seed(seed)
    tasks = []
    for name, scale in (("target", 1.0), ("aux1", 0.5), ("aux2", -1.0)):
        w = torch.randn(dim, 1, generator=gen) * scale

        def split(m):
            x = torch.randn(m, dim, generator=gen)
            return TensorDataset(x, (x @ w).squeeze(1) + 0.1 * torch.randn(m, generator=gen))

        tasks.append(avil.Task(name, split(n), split(n), split(n), nn.Flatten(0),
                               F.mse_loss, avil.metrics.negative_mse))
    return tasks


def test_avil_alpha_step_minimises_the_merged_dev_loss_exactly():
    tasks = linear_suite()
    torch.manual_seed(0)
    model = MultiTaskModel(nn.Linear(6, 1, bias=False), {t.name: t.head for t in tasks})
    config = avil.FitConfig(lr=0.05, batch_size=32, alpha_min=None, alpha_max=None, alpha_dev_size=None,
                            progress=False).validate()
    runner = AlphaVIL(model, FlatParameters(model), tasks, "target", config)
    result = runner.train_epoch(0)
    # Least squares over α: output(α) = X(w0 + Δᵀα), so min_α ‖X Δᵀ α − (y − X w0)‖².
    x, y = tasks[0].dev.tensors
    z = x @ runner.deltas.T  # (n, K)
    expected = torch.linalg.lstsq(z.double(), (y - x @ runner.theta0).double().unsqueeze(1)).solution.squeeze(1)
    got = torch.tensor([result["alphas"][t.name] for t in tasks], dtype=torch.float64)
    assert torch.allclose(got, expected, atol=1e-3), (got, expected)
    step = result["alpha_step"]
    assert step["loss_final"] < step["loss_init"] and step["converged"]


def test_the_radius_limits_each_step_around_its_start():
    start = torch.tensor([1.0, 0.2, 3.0])
    alphas, step = solve(quadratic([5.0, 0.3, -2.0], [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), start, NAMES,
                         alpha_min=0.0, alpha_max=4.0, radius=0.5)
    # a: 1 → 1.5 (radius); b: reaches its optimum 0.3 inside; c: 3 → 2.5 (radius)
    assert torch.allclose(alphas, torch.tensor([1.5, 0.3, 2.5]), atol=1e-4), alphas
    assert step.on_bound == ["a", "c"]


def test_the_per_delta_ablation_is_the_dev_loss_with_one_update_dropped():
    tasks = linear_suite()
    torch.manual_seed(0)
    model = MultiTaskModel(nn.Linear(6, 1, bias=False), {t.name: t.head for t in tasks})
    config = avil.FitConfig(lr=0.05, batch_size=32, alpha_dev_size=None, alpha_ablation=True,
                            progress=False).validate()
    runner = AlphaVIL(model, FlatParameters(model), tasks, "target", config)
    result = runner.train_epoch(0)
    x, y = tasks[0].dev.tensors
    alphas = torch.tensor([result["alphas"][t.name] for t in tasks])
    for k, t in enumerate(tasks):
        dropped = alphas.clone()
        dropped[k] = 0.0
        expected = F.mse_loss(x @ (runner.theta0 + runner.deltas.T @ dropped), y)
        assert result["alpha_step"]["loss_without"][t.name] == pytest.approx(expected.item(), rel=1e-5)


def test_no_run_diverges_on_the_extended_multimnist_suite():
    """The suite where an unconstrained solve extrapolated (α −19 … +10) and its
    weights became loss scales of −23 and 15: under the defaults every α stays
    finite and inside its box, every weight inside its bounds."""
    from avil.tasks import multimnist

    torch.manual_seed(0)
    tasks = multimnist.make_tasks("left", "extended", n_train=768, n_dev=256, n_test=256, n_target_train=128)
    config = avil.FitConfig(epochs=3, batch_size=64, optimizer="sgd", lr=0.05, progress=False)
    h = avil.fit(multimnist.make_encoder(), tasks, "left", "avil", config)
    alphas = torch.tensor([a for epoch in h.alphas for a in epoch.values()])
    weights = torch.tensor([w for epoch in h.task_weights for w in epoch.values()])
    assert len(alphas) == 3 * 5 and torch.isfinite(alphas).all() and torch.isfinite(weights).all()
    assert ((alphas >= config.alpha_min) & (alphas <= config.alpha_max)).all(), alphas
    assert ((weights >= config.weight_min) & (weights <= config.weight_max)).all(), weights
    assert all(s["loss_final"] <= s["loss_init"] for s in h.alpha_step)
