"""Every suite's heads depend on its seed only: never on, nor changing, the
global RNG state (so a notebook cell run twice, or in another order, builds
the same heads)."""
import pytest
import torch

from avil.tasks import multimnist, toy


def head_weights(tasks):
    return [p.detach().clone() for t in tasks for p in t.head.parameters()]


def build_after_global_draws(build, draws):
    torch.manual_seed(123)
    torch.rand(draws)  # a different global RNG state for each call
    state = torch.random.get_rng_state()
    tasks = build()
    assert torch.equal(torch.random.get_rng_state(), state), "building the suite changed the global RNG"
    return head_weights(tasks)


def assert_same(a, b):
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_toy_heads_depend_on_the_seed_only():
    build = lambda: toy.make_tasks(1, n_aux=20, n_dev=10, n_test=10)  # noqa: E731
    assert_same(build_after_global_draws(build, 1), build_after_global_draws(build, 7))
    other = head_weights(toy.make_tasks(2, n_aux=20, n_dev=10, n_test=10))
    assert not torch.equal(other[0], build_after_global_draws(build, 1)[0])


def test_toy_encoder_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    first = [p.detach().clone() for p in toy.make_encoder(3).parameters()]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert_same(first, [p.detach().clone() for p in toy.make_encoder(3).parameters()])


@pytest.mark.parametrize("suite", ["basic", "extended"])
def test_multimnist_heads_depend_on_the_head_seed_only(suite):
    sizes = dict(n_train=64, n_dev=32, n_test=32, seed=0)
    build = lambda: multimnist.make_tasks("left", suite, head_seed=5, **sizes)  # noqa: E731
    heads = build_after_global_draws(build, 1)
    assert_same(heads, build_after_global_draws(build, 7))
    # head_seed=None means the data seed; another head seed gives other heads.
    assert_same(head_weights(multimnist.make_tasks("left", suite, head_seed=0, **sizes)),
                head_weights(multimnist.make_tasks("left", suite, **sizes)))
    assert not torch.equal(head_weights(multimnist.make_tasks("left", suite, head_seed=6, **sizes))[0], heads[0])
