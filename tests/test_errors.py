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


def fit(tasks, target=toy_suite.TARGET, method="avil", resume=False, **config):
    return avil.fit(toy_suite.make_encoder(0), tasks, target, method, avil.FitConfig(**{**QUIET, **config}),
                    resume=resume)


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
    ("alpha_dev_size", 0), ("alpha_radius", 0.0), ("alpha_max", -1.0), ("weight_max", 0.01), ("alpha_penalty", -1.0),
])
def test_invalid_config(toy, field, value):
    _, tasks = toy()
    with pytest.raises(ValueError, match=rf"FitConfig\.{field} = .*Fix: pass e\.g\. FitConfig\({field}="):
        fit(tasks, **{field: value})


def test_nan_loss_stops_names_task_and_epoch_and_keeps_the_last_checkpoint(toy, tmp_path):
    _, tasks = toy()
    calls = {"n": 0}
    # ⌈2000/32⌉ = 63 noise batches per αVIL epoch; the checks before training run without gradients.
    healthy_calls = 63

    def poisoned(out, y, reduction="mean"):
        calls["n"] += torch.is_grad_enabled()
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


# -- finding 1: non-finite values never train silently, never reach a checkpoint --------------------

def test_nan_in_the_target_dev_inputs_is_refused_before_training(toy, tmp_path):
    _, tasks = toy()
    tasks[0].dev.tensors[0][5, 0] = float("nan")
    with pytest.raises(ValueError, match=r"Task 'target': the dev split holds NaN or inf in its inputs "
                                         r"\(first at example 5\).*Fix"):
        fit(tasks, checkpoint_dir=str(tmp_path))
    assert not (tmp_path / checkpoint.FILENAME).exists()


def test_inf_in_an_auxiliary_label_is_refused_before_training(toy):
    _, tasks = toy()
    tasks[3].train.tensors[1][1999] = float("inf")
    with pytest.raises(ValueError, match=r"Task 'harmful': the train split holds NaN or inf in its labels "
                                         r"\(first at example 1999\)"):
        fit(tasks)


def poison_after_first_epoch(monkeypatch, method, poison):
    """Run ``poison(runner, result)`` after every epoch but the first of ``method``."""
    cls = avil.METHODS[method]
    train_epoch = cls.train_epoch

    def poisoned(self, epoch):
        result = train_epoch(self, epoch)
        if epoch >= 1:
            poison(self, result)
        return result

    monkeypatch.setattr(cls, "train_epoch", poisoned)


def assert_last_checkpoint_is_epoch_1_and_finite(directory):
    saved = checkpoint.load(directory)
    assert len(saved["history"]["dev"]) == 1
    assert torch.isfinite(saved["flat"]).all()


def test_non_finite_alpha_stops_before_it_is_checkpointed(toy, tmp_path, monkeypatch):
    _, tasks = toy()
    poison_after_first_epoch(monkeypatch, "avil", lambda runner, result: result["alphas"].update(noise=float("nan")))
    with pytest.raises(avil.TrainingError, match=r"α of \{'noise': nan\} is not finite after epoch 2 .*"
                                                 r"dev loss of Task 'target'.*Fix.*last checkpoint \(epoch 1\)"):
        fit(tasks, epochs=3, checkpoint_dir=str(tmp_path))
    assert_last_checkpoint_is_epoch_1_and_finite(tmp_path)


def test_non_finite_parameters_stop_before_they_are_checkpointed(toy, tmp_path, monkeypatch):
    _, tasks = toy()
    poison_after_first_epoch(monkeypatch, "uniform", lambda runner, result: runner.flat.data[3].fill_(float("inf")))
    with pytest.raises(avil.TrainingError, match=r"model state became non-finite after epoch 2 .*1 values, the "
                                                 r"first in parameter 'encoder.net.0.weight'.*resume=True"):
        fit(tasks, method="uniform", epochs=3, checkpoint_dir=str(tmp_path))
    assert_last_checkpoint_is_epoch_1_and_finite(tmp_path)


def test_non_finite_batchnorm_statistics_are_named(toy, monkeypatch):
    _, tasks = toy()
    encoder = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU())

    def poison(runner, result):
        runner.model.encoder[1].running_mean[0] = float("nan")

    poison_after_first_epoch(monkeypatch, "uniform", poison)
    with pytest.raises(avil.TrainingError, match=r"after epoch 2 .*the first in buffer 'encoder.1.running_mean'"):
        avil.fit(encoder, tasks, toy_suite.TARGET, "uniform", avil.FitConfig(progress=False, epochs=2))


@pytest.mark.parametrize("value, message", [
    (float("nan"), "its metric_fn returned nan on the dev split"),
    (None, r"its metric_fn fails on the dev split .*TypeError"),
])
def test_a_non_finite_or_failing_metric_names_task_split_and_epoch(toy, value, message):
    _, tasks = toy()
    tasks[0].metric_fn = lambda outputs, y: value
    with pytest.raises((avil.TrainingError, ValueError), match=rf"Task 'target': after epoch 1 .*{message}.*Fix"):
        fit(tasks)


def test_nan_loss_advice_agrees_with_the_resume_rules(toy, tmp_path):
    """The NaN error advises resuming with a lower lr, and that resume is allowed and recorded."""
    _, tasks = toy()
    healthy = {"n": 0, "poison": True}

    def poisoned(out, y, reduction="mean"):
        healthy["n"] += torch.is_grad_enabled()
        loss = F.cross_entropy(out, y, reduction=reduction)
        return loss * float("nan") if healthy["poison"] and healthy["n"] > 63 else loss

    tasks[2].loss_fn = poisoned
    with pytest.raises(avil.TrainingError, match=r"last checkpoint \(epoch 1\) in .* is intact: continue from it "
                                                 r"with avil.fit\(\.\.\., resume=True\), e.g. with a lower "
                                                 r"FitConfig.lr"):
        fit(tasks, epochs=2, checkpoint_dir=str(tmp_path))
    healthy["poison"] = False
    history = fit(tasks, epochs=2, lr=5e-4, checkpoint_dir=str(tmp_path), resume=True)
    assert history.epochs == 2 and history.config["lr"] == 5e-4
    assert history.resumes == [{"epoch": 1, "changed": {"lr": [1e-3, 5e-4]}}]


# -- finding 6: bad data caught before training, each named for what it is ---------------------------

def test_a_label_out_of_range_deep_in_a_split(toy):
    _, tasks = toy()
    tasks[1].train.tensors[1][1500] = 9
    with pytest.raises(ValueError, match=r"Task 'same_rule': the train split has a label outside 0..3 \(label 9 "
                                         r"at example 1500\), but Task.head outputs 4 classes.*Fix"):
        fit(tasks)


def test_a_bad_label_in_the_test_split(toy):
    _, tasks = toy()
    tasks[0].test.tensors[1][10] = -3
    with pytest.raises(ValueError, match=r"Task 'target': the test split has a label outside 0..3 \(label -3"):
        fit(tasks)


@pytest.mark.parametrize("task, split, make, message", [
    # labels of the wrong dtype: the labels are blamed, not the head
    (0, "dev", lambda x, y: (x, y.float()),
     r"Task 'target': the dev split's labels are torch.float32, but its loss_fn needs integer class indices "
     r"\(torch.long\).*Fix: store that split's labels as torch.int64"),
    (0, "dev", lambda x, y: (x[:, :19], y),
     r"Task 'target': the dev split: the encoder fails on its inputs \(a torch.float32 tensor of shape \(2, 19\).*Fix"),
    (0, "train", lambda x, y: (x, y[:, None]),
     r"Task 'target': the train split's labels have shape \(1,\) per example, one dimension too many for its "
     r"loss_fn.*Fix: store them with shape \(\) per example \(y.squeeze\(-1\)\)"),
    (3, "train", lambda x, y: (x, y[:, None, None]),
     r"Task 'harmful': the train split: its labels \(a torch.float32 tensor of shape \(2, 1, 1\)\) do not have the "
     r"shape of the head's output.*broadcasts.*Fix"),
])
def test_a_split_whose_inputs_or_labels_do_not_fit(toy, task, split, make, message):
    _, tasks = toy()
    setattr(tasks[task], split, TensorDataset(*make(*getattr(tasks[task], split).tensors)))
    with pytest.raises(ValueError, match=message):
        fit(tasks)


class Items(torch.utils.data.Dataset):
    """A dataset that is not a TensorDataset (as text datasets are)."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]


class DictItems(Items):
    def __getitem__(self, i):
        x, y = self.data[i]
        return {"x": x, "y": y}


class LenLies(Items):
    def __len__(self):
        return len(self.data) + 5


@pytest.mark.parametrize("make, message", [
    (lambda ds: TensorDataset(*ds.tensors, ds.tensors[1]), r"items are a tuple of 3.*not \(x, y\) pairs. Fix"),
    (DictItems, r"items are a dict.*not \(x, y\) pairs. Fix"),
    (LenLies, r"item 500 cannot be read \(IndexError: .*\), though len\(\) says it has 505. Fix"),
])
def test_items_that_are_not_pairs_or_cannot_be_read(toy, make, message):
    _, tasks = toy()
    tasks[1].dev = make(tasks[1].dev)
    with pytest.raises(ValueError, match=rf"Task 'same_rule': the dev split's {message}"):
        fit(tasks)


def test_batchnorm_with_a_final_training_batch_of_one(toy):
    _, tasks = toy(n_target=97)  # 97 = 3 · 32 + 1
    encoder = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU())
    before = encoder[1].running_mean.clone()
    with pytest.raises(ValueError, match=r"Task 'target': with 97 training examples and FitConfig.batch_size = "
                                         r"32, the last training batch of an epoch holds 1 example.*Fix: pick a "
                                         r"batch_size .*\(e.g. 33\)"):
        avil.fit(encoder, tasks, toy_suite.TARGET, "avil", avil.FitConfig(**QUIET))
    assert torch.equal(encoder[1].running_mean, before)  # the probe left the statistics as they were


def test_batch_of_one_is_fine_without_batchnorm(toy):
    _, tasks = toy(n_target=97)
    assert fit(tasks, method="single_task").epochs == 1


def test_gcs_with_a_parameter_free_target_head(toy):
    _, tasks = toy()
    tasks[0].head = nn.Identity()  # the encoder's 32 features as class scores for the labels 0..3
    history = fit(tasks, method="gcs")
    assert history.epochs == 1 and 0 <= history.test <= 1


# -- finding 7: config and names -----------------------------------------------------------------

@pytest.mark.parametrize("field", ["lr", "epochs", "batch_size", "eval_batch_size", "seed", "rho", "alpha_steps"])
def test_bools_are_not_numbers(toy, field):
    _, tasks = toy()
    with pytest.raises(ValueError, match=rf"FitConfig\.{field} = True: .*Fix"):
        fit(tasks, **{field: True})


@pytest.mark.parametrize("value", ["no", 0, None])
def test_progress_must_be_a_bool(toy, value):
    _, tasks = toy()
    with pytest.raises(ValueError, match=r"FitConfig\.progress = .*must be True or False"):
        fit(tasks, progress=value)


@pytest.mark.parametrize("device, message", [
    ("gpu", "is not a device"),
    ("xla", "avil runs on 'cpu', 'cuda' or 'mps'"),
    pytest.param("cuda", "this machine has no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_an_unavailable_device_is_refused_before_training(toy, device, message):
    _, tasks = toy()
    with pytest.raises(ValueError, match=rf"FitConfig.device = '{device}'.*{message}.*Fix"):
        fit(tasks, device=device)


def test_a_torch_device_is_stored_as_a_string(toy, tmp_path):
    _, tasks = toy()
    history = fit(tasks, method="single_task", device=torch.device("cpu"))
    assert history.config["device"] == "cpu"
    history.to_json(tmp_path / "h.json")
    assert avil.History.from_json(tmp_path / "h.json") == history


def test_fit_leaves_the_callers_config_untouched(toy, tmp_path):
    _, tasks = toy()
    device, directory = torch.device("cpu"), tmp_path / "ckpt"
    config = avil.FitConfig(epochs=1, progress=False, device=device, checkpoint_dir=directory)
    history = avil.fit(toy_suite.make_encoder(0), tasks, toy_suite.TARGET, "avil", config)
    assert config.device is device and config.checkpoint_dir is directory  # not normalised in place
    assert history.config["device"] == "cpu"


@pytest.mark.parametrize("name", ["a.b", "", "train", "keys", 3])
def test_task_names_that_cannot_key_a_module(toy, name):
    _, tasks = toy()
    t = tasks[1]
    with pytest.raises(ValueError, match=r"Task name .* cannot be used.*Fix: rename the task"):
        avil.Task(name, t.train, t.dev, t.test, t.head, t.loss_fn, t.metric_fn)
    t.name = name  # renamed after construction: fit checks again
    with pytest.raises(ValueError, match=r"Task name .* cannot be used"):
        fit(tasks)


@pytest.mark.parametrize("field, value, message", [
    ("head", lambda z: z, "head is a function, not an nn.Module"),
    ("loss_fn", "cross_entropy", "loss_fn is not callable"),
    ("dev", [1, 2], None),
    ("dev", None, "dev is a NoneType, not a dataset"),
])
def test_task_fields_of_the_wrong_kind(toy, field, value, message):
    _, tasks = toy()
    setattr(tasks[1], field, value)
    with pytest.raises((TypeError, ValueError), match=f"Task 'same_rule': {message or ''}.*Fix"):
        fit(tasks)


def test_encoder_and_tasks_of_the_wrong_kind(toy):
    encoder, tasks = toy()
    with pytest.raises(TypeError, match="the encoder is a function, not an nn.Module"):
        avil.fit(lambda x: x, tasks, toy_suite.TARGET, "avil", avil.FitConfig(**QUIET))
    with pytest.raises(ValueError, match="tasks is a Task, not a non-empty list"):
        avil.fit(encoder, tasks[0], toy_suite.TARGET, "avil", avil.FitConfig(**QUIET))


class BatchedItems(Items):
    fetched = 0

    def __getitems__(self, indices):
        BatchedItems.fetched += 1
        return [self.data[i] for i in indices]


@pytest.mark.parametrize("wrap", [Items, BatchedItems])
def test_every_item_of_other_datasets_is_checked(toy, wrap):
    _, tasks = toy()
    tasks[1].train.tensors[1][1500] = 7
    tasks[1].train = wrap(tasks[1].train)
    BatchedItems.fetched = 0
    with pytest.raises(ValueError, match=r"Task 'same_rule': the train split has a label outside 0..3 \(label 7 at "
                                         r"example 1500\)"):
        fit(tasks)
    assert BatchedItems.fetched == (2 if wrap is BatchedItems else 0)  # 2000 items in chunks of 1024
    tasks[1].train.data.tensors[0][1999, 3] = float("nan")
    tasks[1].train.data.tensors[1][1500] = 1
    with pytest.raises(ValueError, match=r"Task 'same_rule': the train split holds NaN or inf in its inputs "
                                         r"\(first at example 1999\)"):
        fit(tasks)


def test_config_and_target_of_the_wrong_kind(toy):
    encoder, tasks = toy()
    with pytest.raises(TypeError, match=r"config is a dict \{'epochs': an int\}, not an avil.FitConfig. Fix: pass "
                                        r"config=avil.FitConfig\(\.\.\.\)"):
        avil.fit(encoder, tasks, toy_suite.TARGET, "avil", {"epochs": 1})
    with pytest.raises(TypeError, match=r"target is the Task 'target' itself. Fix: pass its name, target='target'"):
        avil.fit(encoder, tasks, tasks[0], "avil", avil.FitConfig(**QUIET))


@pytest.mark.parametrize("seed", [-1, 2 ** 62])
def test_seed_out_of_range(toy, seed):
    _, tasks = toy()
    with pytest.raises(ValueError, match=rf"FitConfig.seed = {seed}: must be an integer in \[0, 2\*\*32\)"):
        fit(tasks, seed=seed)


def test_a_collate_fn_that_does_not_return_a_pair(toy):
    _, tasks = toy()
    tasks[1].collate_fn = lambda items: (torch.stack([x for x, _ in items]), torch.stack([y for _, y in items]), 0)
    with pytest.raises(ValueError, match=r"Task 'same_rule': the train split: a batch of its first two items is a "
                                         r"tuple of 3.*not \(x, y\). Fix: make Task.collate_fn return an \(x, y\) pair"):
        fit(tasks)
