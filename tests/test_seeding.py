"""Every suite's heads depend on its seed only: never on, nor changing, the
global RNG state (so a notebook cell run twice, or in another order, builds
the same heads); and what a seed varies is each suite's factory's."""
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


# -- what a seed varies, per suite (docs/design.md §6) --------------------------------------------------

def parameters(encoder, tasks):
    return [p.detach().clone() for p in encoder.parameters()] + head_weights(tasks)


def data(tasks):
    return [x for t in tasks for split in (t.train, t.dev, t.test) for x in split.tensors]


@pytest.mark.parametrize("suite", ["basic", "extended"])
def test_a_multimnist_seed_varies_the_initialisation_and_not_the_data(suite):
    make_run = multimnist.run_factory("left", suite, data_seed=0, n_target_train=32, n_train=64, n_dev=32, n_test=32)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    one = make_run(1)
    assert torch.equal(torch.random.get_rng_state(), state), "building a run changed the global RNG"
    torch.rand(7)  # another global RNG state: the same run all the same
    assert_same(parameters(*one), parameters(*make_run(1)))
    other = make_run(2)
    assert_same(data(one[1]), data(other[1]))  # the data is data_seed's
    first, second = parameters(*one), parameters(*other)
    assert not torch.equal(first[0], second[0]), "the seed varies the encoder"
    assert not torch.equal(head_weights(one[1])[0], head_weights(other[1])[0]), "the seed varies the heads"
    assert len(data(one[1])[0]) == 32  # n_target_train reached the target
    other_data = multimnist.run_factory("left", suite, data_seed=1, n_target_train=32, n_train=64, n_dev=32, n_test=32)
    assert not torch.equal(data(other_data(1)[1])[0], data(one[1])[0]), "data_seed varies the data"


@pytest.mark.parametrize("kwargs, error", [
    (dict(target="middle"), "target='middle'"),
    (dict(suite="large"), "suite='large'"),
    (dict(n_trian=64), r"unknown arguments \['n_trian'\]"),
])
def test_run_factory_rejects_bad_arguments_before_any_run(kwargs, error):
    with pytest.raises((ValueError, TypeError), match=error):
        multimnist.run_factory(**kwargs)


def test_a_toy_seed_varies_everything():
    encoder, tasks = toy.make_run(1)
    assert_same(parameters(encoder, tasks), parameters(toy.make_encoder(1), toy.make_tasks(1)))
    _, others = toy.make_run(2)
    assert not torch.equal(data(tasks)[0], data(others)[0])
