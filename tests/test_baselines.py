"""The two target-focused baselines: gcs (Du et al. 2018) and diw (Fang et al. 2020)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import avil
from avil.flat import FlatParameters
from avil.methods.diw import DIW, clip_normalise, gaussian_kernel
from avil.methods.gcs import combine
from avil.models import MultiTaskModel
from avil.tasks import toy

BASELINES = ["gcs", "diw"]


def small_tasks(seed=0):
    return toy.make_tasks(seed, n_aux=300, n_dev=200, n_test=200)


def config(**kw):
    kw = {"epochs": 2, "seed": 0, "progress": False, **kw}
    return avil.FitConfig(**kw)


def test_registered():
    assert avil.METHODS["gcs"].name == "gcs"
    assert avil.METHODS["diw"].name == "diw"


# -- gcs: the combination step on constructed gradients ------------------------

def test_combine_drops_an_opposing_gradient_and_weights_an_acute_one_by_its_cosine():
    g_t = torch.tensor([1.0, 0.0, 0.0])
    against = torch.tensor([-2.0, 1.0, 0.0])  # cos < 0
    acute = torch.tensor([1.0, 1.0, 0.0])  # cos = 1/√2
    combined, w = combine(g_t, [against, acute])
    assert w[0].item() == 0.0
    assert w[1].item() == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert torch.allclose(combined, g_t + acute / math.sqrt(2))


def test_combine_unweighted_gates_with_one_or_zero():
    g_t = torch.tensor([1.0, 2.0])
    combined, w = combine(g_t, torch.stack([torch.tensor([-1.0, -1.0]), torch.tensor([3.0, -1.0])]),
                          variant="unweighted")
    assert w.tolist() == [0.0, 1.0]
    assert torch.equal(combined, g_t + torch.tensor([3.0, -1.0]))


def test_combine_zero_gradient_gets_weight_zero_not_nan():
    combined, w = combine(torch.zeros(4), [torch.ones(4)])
    assert w.tolist() == [0.0] and torch.equal(combined, torch.zeros(4))


@pytest.mark.parametrize("variant", ["weighted", "unweighted"])
def test_gcs_gates_same_rule_above_noise_on_the_toy_suite(variant):
    tasks = toy.make_tasks(0, n_aux=600, n_dev=200, n_test=200)
    h = avil.fit(toy.make_encoder(0), tasks, "target", "gcs", config(gcs_variant=variant))
    mean = {name: sum(w[name] for w in h.task_weights) / h.epochs for name in h.tasks}
    assert mean["target"] == 1.0
    assert mean["same_rule"] > mean["noise"]
    assert all(0.0 <= w[name] <= 1.0 for w in h.task_weights for name in h.tasks)


def test_gcs_combined_step_writes_the_gated_gradient(monkeypatch):
    """One combined step: the encoder gets g_t + w·g_a, the target head g_t, the aux head g_a."""
    tasks = small_tasks()
    model = MultiTaskModel(toy.make_encoder(0), {t.name: t.head for t in tasks})
    flat = FlatParameters(model)
    method = avil.METHODS["gcs"](model, flat, tasks, "target", config(optimizer="sgd").validate())
    tb = next(method.batches("target", torch.arange(32)))
    ab = next(method.batches("same_rule", torch.arange(32)))
    grads = {}
    for name, batch in (("target", tb), ("same_rule", ab)):
        method.task_loss(name, batch).backward()
        grads[name] = flat.grad.clone()
    seen = {}
    monkeypatch.setattr(method.optimizers["model"], "step", lambda: seen.setdefault("g", flat.grad.clone()))
    *_, gate = method.combined_step(method.optimizers["model"], "same_rule", tb, ab)
    s, ht, ha = flat.range_of(model.encoder), flat.range_of(model.heads["target"]), flat.range_of(model.heads["same_rule"])
    g = seen["g"]
    assert torch.allclose(g[s], grads["target"][s] + gate * grads["same_rule"][s], atol=1e-6)
    assert torch.allclose(g[ht], grads["target"][ht]) and torch.allclose(g[ha], grads["same_rule"][ha])
    assert model.heads["noise"].weight.grad is None  # untouched heads are skipped by the optimizer


# -- diw -------------------------------------------------------------------------

def mixture_tasks(seed=0, shift=3.0, n=400):
    """The toy target plus an auxiliary whose first half is drawn like the target's
    dev inputs (N(0, I)) and whose second half is shifted by ``shift``."""
    target = toy.make_tasks(seed, n_aux=10, n_dev=300, n_test=100)[0]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=gen)
    x[n // 2:] += shift
    y = torch.randint(4, (n,), generator=gen)
    mixed = avil.Task("mixed", TensorDataset(x, y), TensorDataset(x[:50], y[:50]), TensorDataset(x[:50], y[:50]),
                      nn.Linear(32, 4), F.cross_entropy, avil.metrics.accuracy)
    return [target, mixed]


def make_diw(tasks, **kw):
    model = MultiTaskModel(toy.make_encoder(0), {t.name: t.head for t in tasks})
    return DIW(model, FlatParameters(model), tasks, "target", config(**kw).validate())


@pytest.mark.parametrize("max_aux", [1000, 100])  # all examples fitted / most via the kernel expansion
def test_diw_weights_target_like_examples_higher(max_aux):
    method = make_diw(mixture_tasks(), diw_max_aux=max_aux)
    w = method.estimate_weights(0)["mixed"]  # (400,)
    assert w.shape == (400,)
    assert w.mean().item() == pytest.approx(1.0, rel=1e-5)
    assert w.min() >= 0 and w.max() <= method.config.diw_bound * (1 + 1e-5)
    assert w[:200].mean() > 1.5 * w[200:].mean()


def test_diw_task_weights_are_normalised_jointly_so_a_shifted_task_scores_lower():
    tasks = mixture_tasks()
    x, y = tasks[1].train.tensors
    near = avil.Task("near", TensorDataset(x[:200], y[:200]), tasks[1].dev, tasks[1].test,
                     nn.Linear(32, 4), F.cross_entropy, avil.metrics.accuracy)
    far = avil.Task("far", TensorDataset(x[200:], y[200:]), tasks[1].dev, tasks[1].test,
                    nn.Linear(32, 4), F.cross_entropy, avil.metrics.accuracy)
    h = avil.fit(toy.make_encoder(0), [tasks[0], near, far], "target", "diw", config())
    for w in h.task_weights:
        assert w["target"] == 1.0
        assert w["near"] > w["far"]
        assert (w["near"] + w["far"]) / 2 == pytest.approx(1.0, rel=1e-4)  # equal sizes, joint mean 1


def test_diw_kernel_expansion_is_exact_on_the_fitted_points():
    """β(x) = (κ̄(x) − k(x, Z)β/s)/λ reproduces the solution of (K/s + λI)β = κ̄ at x ∈ Z."""
    gen = torch.Generator().manual_seed(0)
    z, z_dev, lam = torch.randn(50, 5, generator=gen), torch.randn(30, 5, generator=gen) + 0.5, 0.1
    k = gaussian_kernel(z, z, 2.0)
    kappa = gaussian_kernel(z, z_dev, 2.0).mean(1)
    beta = torch.linalg.solve(k / 50 + lam * torch.eye(50), kappa)
    assert torch.allclose((kappa - k @ beta / 50) / lam, beta, atol=1e-4)


def test_clip_normalise():
    w = clip_normalise(torch.tensor([-1.0, 0.0, 1.0, 2.0, 100.0]), bound=3.0)
    assert w.mean().item() == pytest.approx(1.0) and w.max().item() <= 3.0 + 1e-5 and w.min().item() == 0.0
    assert torch.equal(clip_normalise(torch.tensor([-1.0, -2.0]), bound=3.0), torch.ones(2))


def test_diw_weights_enter_the_loss_per_example():
    """A zero weight removes an example from the gradient; weight 1 everywhere is the plain loss."""
    tasks = small_tasks()
    method = make_diw(tasks)
    batch = next(method.batches("same_rule", torch.arange(8)))
    opt = method.optimizers["model"]
    opt.step = lambda: None  # keep θ fixed: compare gradients only
    grads = []
    for w in (torch.ones(8), torch.tensor([1.0] * 4 + [0.0] * 4) * 2):
        method.weighted_step(opt, "same_rule", batch, w)
        grads.append(method.flat.grad.clone())
    method.task_loss("same_rule", batch).backward()
    assert torch.allclose(grads[0], method.flat.grad, atol=1e-6)
    method.task_loss("same_rule", tuple(t[:4] for t in batch)).backward()
    assert torch.allclose(grads[1], method.flat.grad, atol=1e-6)


def test_diw_rejects_a_loss_without_reduction():
    tasks = small_tasks()
    tasks[1].loss_fn = lambda out, y: F.cross_entropy(out, y)
    with pytest.raises(ValueError, match="same_rule.*reduction"):
        avil.fit(toy.make_encoder(0), tasks, "target", "diw", config())


# -- shared: determinism, config errors, resume -------------------------------------

@pytest.mark.parametrize("method", BASELINES)
def test_deterministic_under_a_seed(method):
    runs = [avil.fit(toy.make_encoder(1), small_tasks(1), "target", method, config(seed=1)) for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0].task_weights[-1]["target"] == 1.0


@pytest.mark.parametrize("field, value", [
    ("gcs_variant", "cosine"), ("diw_bound", 1.0), ("diw_bound", float("inf")), ("diw_ridge", 0.0),
    ("diw_max_aux", 0), ("diw_max_dev", 2.5),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"FitConfig.{field}"):
        avil.fit(toy.make_encoder(0), small_tasks(), "target", "gcs", config(**{field: value}))


@pytest.mark.parametrize("method", BASELINES)
def test_resume_equals_an_uninterrupted_run(method, tmp_path):
    full = avil.fit(toy.make_encoder(0), small_tasks(), "target", method, config(epochs=4))
    cfg = config(epochs=2, checkpoint_dir=str(tmp_path))
    avil.fit(toy.make_encoder(0), small_tasks(), "target", method, cfg)
    cfg.epochs = 4
    resumed = avil.fit(toy.make_encoder(0), small_tasks(), "target", method, cfg, resume=True)
    assert resumed == full
