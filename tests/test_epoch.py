"""The shared interleaved epoch (Method.train_epoch) and its typed result."""
import pytest

import avil
from avil.methods import DIW, GCS, EpochResult, Method, SingleTask, Uniform
from avil.tasks import toy


def test_epoch_result_unpacks_like_the_dict_it_replaces():
    result = EpochResult(task_weights={"a": 1.0}, train_loss={"a": 0.5})
    assert result.alphas == {}
    assert dict(**result) == result.as_dict() == {"task_weights": {"a": 1.0}, "train_loss": {"a": 0.5},
                                                   "lr": {}, "alphas": {}}
    with pytest.raises(KeyError):
        result["dev"]
    with pytest.raises(KeyError):
        result["alpha_step"]  # None: left out, so History.record gets only what was set
    step = EpochResult(task_weights={}, train_loss={}, alpha_step={"iterations": 3})
    assert step["alpha_step"] == {"iterations": 3} and len(step) == 5


@pytest.mark.parametrize("cls", [SingleTask, Uniform, GCS, DIW])
def test_interleaved_methods_share_one_epoch_loop(cls):
    """A method changes a slot, not the loop (no training loop repeated)."""
    assert cls.train_epoch is Method.train_epoch


@pytest.mark.parametrize("method", ["single_task", "uniform", "gcs", "diw"])
def test_epoch_reports_the_tasks_it_trained(method):
    tasks = toy.make_tasks(0, n_aux=100, n_dev=50, n_test=50)
    h = avil.fit(toy.make_encoder(0), tasks, toy.TARGET, method, avil.FitConfig(epochs=1, progress=False))
    trained = [toy.TARGET] if method == "single_task" else [t.name for t in tasks]
    assert sorted(h.train_loss[0]) == sorted(trained)
    assert set(h.task_weights[0]) == {t.name for t in tasks} and h.alphas == []
