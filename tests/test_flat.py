"""Flat parameters and the reference merge: the numbers αVIL is built on."""
import torch
from torch import nn

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
