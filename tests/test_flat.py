"""Flat parameters and the reference merge: the numbers αVIL is built on."""
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import avil
from avil.flat import FlatParameters
from avil.models import MLP, MultiTaskModel


def model():
    torch.manual_seed(0)
    return MultiTaskModel(MLP(6, 8), {"a": nn.Linear(8, 3), "b": nn.Linear(8, 1)})


def test_parameters_are_views_of_the_flat_buffer():
    m = model()
    before = [p.detach().clone() for p in m.parameters()]
    flat = FlatParameters(m)
    assert flat.numel == sum(p.numel() for p in m.parameters())
    assert all(torch.equal(p, b) for p, b in zip(m.parameters(), before))
    flat.data.add_(1.0)
    assert all(torch.equal(p, b + 1) for p, b in zip(m.parameters(), before))


def test_encoder_is_one_leading_range():
    m = model()
    flat = FlatParameters(m)
    enc = flat.range_of(m.encoder)
    assert enc.start == 0 and enc.stop == sum(p.numel() for p in m.encoder.parameters())
    assert flat.range_of(m.heads["a"]).start == enc.stop


def test_bound_gradients_land_in_the_flat_buffer_and_unused_heads_stay_none():
    m = model()
    flat = FlatParameters(m)
    params_a = list(m.encoder.parameters()) + list(m.heads["a"].parameters())
    flat.bind_grads(params_a)
    m(torch.randn(5, 6), "a").sum().backward()
    assert all(p.grad is None for p in m.heads["b"].parameters())
    expected = torch.cat([p.grad.reshape(-1) for p in params_a])
    assert torch.equal(flat.grad[: expected.numel()], expected)
    assert flat.grad.abs().sum() > 0


def test_merge_equals_theta0_plus_weighted_deltas_parameter_by_parameter():
    m = model()
    flat = FlatParameters(m)
    k = 3
    theta0 = [p.detach().clone() for p in m.parameters()]
    deltas = torch.randn(k, flat.numel)  # (K, N)
    alphas = torch.tensor([0.5, -1.25, 2.0])  # (K,)
    merged = avil.ops.merge(flat.data.clone(), deltas, alphas)
    avil.ops.merge_(flat.data, deltas, alphas)
    assert torch.equal(merged, flat.data)
    offset = 0
    for p, p0 in zip(m.parameters(), theta0):
        n = p.numel()
        expected = p0.clone()
        for t in range(k):
            expected += alphas[t] * deltas[t, offset : offset + n].view_as(p)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-6)
        offset += n


def test_dots_is_the_alpha_gradient_of_the_merged_loss():
    torch.manual_seed(1)
    theta0, deltas = torch.randn(50), torch.randn(4, 50)
    alphas = torch.rand(4, requires_grad=True)
    target = torch.randn(50)
    theta = theta0 + deltas.t() @ alphas
    loss = ((theta - target) ** 2).sum()
    loss.backward()
    g = 2 * (theta.detach() - target)
    torch.testing.assert_close(avil.ops.dots(deltas, g), alphas.grad)


# -- the whole model state: float buffers after the parameters --------------------------------------

def bn_model():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU())
    return MultiTaskModel(encoder, {"a": nn.Linear(8, 3), "b": nn.Linear(8, 1)})


def test_float_buffers_follow_the_parameters_in_the_flat_buffer():
    m = bn_model()
    bn = m.encoder[1]
    m.train()
    m(torch.randn(16, 6), "a")  # running statistics away from their initial 0 and 1
    stats = bn.running_mean.clone(), bn.running_var.clone()
    flat = FlatParameters(m)
    n_params = sum(p.numel() for p in m.parameters())
    assert flat.param_numel == n_params and flat.numel == n_params + 16
    assert torch.equal(flat.data[n_params : n_params + 8], stats[0])
    assert torch.equal(flat.data[n_params + 8 :], stats[1])
    assert list(flat.other_buffers) == ["encoder.1.num_batches_tracked"]
    assert flat.range_of(m.encoder) == slice(0, 6 * 8 + 8 + 8 + 8)  # parameter ranges are unchanged
    # training updates the statistics inside the flat buffer, in place
    m(torch.randn(16, 6) + 3, "a")
    assert torch.equal(flat.data[n_params : n_params + 8], bn.running_mean)
    assert not torch.equal(bn.running_mean, stats[0])
    assert flat.unbound() == []
    # restoring θ restores the statistics
    flat.load_(torch.cat([flat.data[:n_params], stats[0], stats[1]]))
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])


def test_the_gradient_buffer_is_zero_on_the_buffers():
    m = bn_model()
    flat = FlatParameters(m)
    flat.bind_grads(m.parameters())
    m.train()
    m(torch.randn(16, 6), "a").sum().backward()
    assert flat.grad[: flat.param_numel].abs().sum() > 0
    assert torch.equal(flat.grad[flat.param_numel :], torch.zeros(16))


def test_merge_moves_parameters_by_the_sum_and_buffers_by_the_mean():
    m = bn_model()
    flat = FlatParameters(m)
    theta0 = flat.data.clone()
    deltas = torch.randn(3, flat.numel)  # (K, N)
    alphas = torch.tensor([0.5, 1.0, 2.0])  # (K,)
    flat.merge_(theta0, deltas, alphas)
    p = flat.param_numel
    moved = deltas.t() @ alphas  # Σ_t α_t δ_t (N,)
    torch.testing.assert_close(flat.data[:p], theta0[:p] + moved[:p])
    torch.testing.assert_close(flat.data[p:], theta0[p:] + moved[p:] / 3)
    bn = m.encoder[1]
    assert torch.equal(bn.running_mean, flat.data[p : p + 8])


def test_merge_with_half_precision_deltas():
    m = bn_model()
    flat = FlatParameters(m)
    theta0 = flat.data.clone()
    deltas = torch.randn(2, flat.numel).to(torch.bfloat16)
    alphas = torch.tensor([1.0, -0.5])
    flat.merge_(theta0, deltas, alphas)
    moved = deltas.float().t() @ alphas
    torch.testing.assert_close(flat.data, theta0 + torch.cat([moved[: flat.param_numel], moved[flat.param_numel :] / 2]))


def test_a_negative_merged_variance_is_clamped_before_use_without_breaking_autograd():
    m = bn_model()
    flat = FlatParameters(m)
    bn = m.encoder[1]
    bn.running_var[:4] = -0.5  # what an extrapolating merge can produce
    m.eval()
    flat.bind_grads(m.parameters())
    out = m(torch.randn(5, 6), "a")
    assert torch.isfinite(out).all()
    assert torch.equal(bn.running_var[:4], torch.zeros(4)) and (bn.running_var[4:] > 0).all()
    flat.data.add_(0.0)  # the α-step writes θ between forward and the next merge
    out.sum().backward()  # the clamp and the flat writes bumped no version counter autograd saved
    assert flat.grad.abs().sum() > 0


def test_a_buffer_replaced_instead_of_updated_in_place_is_reported():
    m = bn_model()
    flat = FlatParameters(m)
    m.encoder[1].running_mean = torch.zeros(8)
    assert flat.unbound() == ["encoder.1.running_mean"]
    assert flat.name_at(flat.param_numel) == "buffer 'encoder.1.running_mean'"
    assert flat.name_at(0) == "parameter 'encoder.0.weight'"


def test_non_float_buffers_round_trip_by_name():
    m = bn_model()
    flat = FlatParameters(m)
    m.train()
    m(torch.randn(4, 6), "a")
    saved = flat.other_buffers_state()
    m(torch.randn(4, 6), "a")
    assert int(m.encoder[1].num_batches_tracked) == 2
    flat.load_other_buffers_(saved)
    assert int(m.encoder[1].num_batches_tracked) == 1


def test_task_order_does_not_change_avil_with_batchnorm(toy):
    """Each task pass starts from θ0's running statistics, not from the ones the
    previous pass left. One auxiliary's inputs are shifted and BatchNorm keeps
    only the last batch's statistics (momentum 1), so a leak would show: with
    statistics outside θ the two orders below gave target dev accuracy
    0.330, 0.338 and 0.346, 0.350. Full batches, so that no shuffle differs
    between the orders; α is not compared (the α-step's sign-driven steps
    amplify float rounding)."""
    def run(order):
        _, tasks = toy()
        for split in ("train", "dev", "test"):
            x, y = getattr(tasks[2], split).tensors
            setattr(tasks[2], split, TensorDataset(4 * x + 3, y))
        torch.manual_seed(0)
        encoder = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32, momentum=1.0), nn.ReLU())
        config = avil.FitConfig(epochs=2, batch_size=2000, eval_batch_size=2000, progress=False)
        return avil.fit(encoder, [tasks[i] for i in order], "target", "avil", config)

    forward, backward = run([0, 1, 2, 3]), run([3, 2, 1, 0])
    assert forward.dev == pytest.approx(backward.dev, abs=2.5e-3)  # at most one of 500 dev examples apart
    assert forward.test_per_epoch == pytest.approx(backward.test_per_epoch, abs=1e-3)
