"""Bad input gets a clear error naming the task, the field and the fix, and
loses no checkpoint already written."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import avil
from avil import checkpoint
from avil.tasks import toy as toy_suite

QUIET = dict(progress=False, epochs=1)


def fit(tasks, target=toy_suite.TARGET, method="avil", **config):
    return avil.fit(toy_suite.make_encoder(0), tasks, target, method, avil.FitConfig(**{**QUIET, **config}))


def test_target_not_among_tasks(toy):
    _, tasks = toy()
    with pytest.raises(ValueError, match="target 'lefty' is not among the tasks.*Fix"):
        fit(tasks, target="lefty")


def test_duplicate_task_names(toy):
    _, tasks = toy()
    tasks[2].name = "same_rule"
    with pytest.raises(ValueError, match=r"duplicate task names \['same_rule'\].*unique"):
        fit(tasks)


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_empty_split(toy, split):
    _, tasks = toy()
    setattr(tasks[1], split, TensorDataset(torch.zeros(0, 20), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match=f"Task 'same_rule': the {split} split is empty.*Fix"):
        fit(tasks)


def test_head_that_does_not_fit_its_loss(toy):
    _, tasks = toy()
    tasks[1].head = nn.Linear(32, 1)  # one output for a 4-class cross-entropy on labels up to 3
    with pytest.raises(ValueError, match="Task 'same_rule': its head's output does not fit its loss_fn.*Fix"):
        fit(tasks)


def test_head_of_the_wrong_input_width(toy):
    _, tasks = toy()
    tasks[3].head = nn.Linear(50, 1)
    with pytest.raises(ValueError, match="Task 'harmful'.*head"):
        fit(tasks)


def test_non_scalar_loss(toy):
    _, tasks = toy()
    tasks[1].loss_fn = lambda out, y: F.cross_entropy(out, y, reduction="none")
    with pytest.raises(ValueError, match="Task 'same_rule': loss_fn returned .* not a scalar"):
        fit(tasks)


def test_unknown_method(toy):
    _, tasks = toy()
    with pytest.raises(ValueError, match="unknown method 'alpha'.*avil.METHODS"):
        fit(tasks, method="alpha")


@pytest.mark.parametrize("field, value", [
    ("lr", -1.0), ("lr", 0.0), ("rho", 0.0), ("rho", 1.5), ("alpha_steps", -1), ("epochs", 0),
    ("batch_size", 0), ("alpha_lr", -0.1), ("alpha_solver", "newton"), ("alpha_init", "zeros"),
    ("weight_update", "sum"), ("weight_min", 0.0), ("optimizer", "rmsprop"), ("delta_dtype", "int8"),
    ("alpha_dev_size", 0), ("alpha_max", -1.0), ("weight_max", 0.01), ("alpha_penalty", -1.0),
])
def test_invalid_config(toy, field, value):
    _, tasks = toy()
    with pytest.raises(ValueError, match=rf"FitConfig\.{field} = .*Fix: pass e\.g\. FitConfig\({field}="):
        fit(tasks, **{field: value})


def test_nan_loss_stops_names_task_and_epoch_and_keeps_the_last_checkpoint(toy, tmp_path):
    _, tasks = toy()
    calls = {"n": 0}
    # One call from the head check, then ⌈2000/32⌉ = 63 noise batches per αVIL epoch.
    healthy_calls = 1 + 63

    def poisoned(out, y, reduction="mean"):
        calls["n"] += 1
        loss = F.cross_entropy(out, y, reduction=reduction)
        return loss * float("nan") if calls["n"] > healthy_calls else loss

    tasks[2].loss_fn = poisoned
    with pytest.raises(avil.TrainingError, match="Task 'noise': the training loss became nan in epoch 2"):
        fit(tasks, epochs=3, checkpoint_dir=str(tmp_path))
    saved = checkpoint.load(tmp_path)
    assert len(saved["history"]["dev"]) == 1
    assert torch.isfinite(saved["flat"]).all()


def test_resume_without_checkpoint_dir(toy):
    _, tasks = toy()
    with pytest.raises(ValueError, match="resume=True needs FitConfig.checkpoint_dir"):
        avil.fit(toy_suite.make_encoder(0), tasks, toy_suite.TARGET, "avil",
                 avil.FitConfig(**QUIET), resume=True)
