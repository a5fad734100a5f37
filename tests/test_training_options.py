"""What a practitioner's training loop offers: the best model back, AdamW with
weight decay, learning-rate schedules with warmup, gradient clipping, bf16 and
fp16 autocast, callbacks and TensorBoard. (Resumed runs with these options
equal uninterrupted ones: tests/test_checkpoint.py.)"""
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import avil
from avil import checkpoint, optim
from avil.tasks import toy as toy_suite
from avil.trainer import predict

QUIET = dict(progress=False)


def fit(method="avil", tasks=None, callbacks=(), resume=False, **config):
    tasks = tasks if tasks is not None else toy_suite.make_tasks(0, n_aux=300, n_dev=100, n_test=300)
    encoder = toy_suite.make_encoder(0)
    history = avil.fit(encoder, tasks, toy_suite.TARGET, method, avil.FitConfig(**{**QUIET, **config}),
                       resume=resume, callbacks=list(callbacks))
    return history, encoder, tasks


def model_test_metric(encoder, tasks):
    """The target's test metric of the modules fit trained, as they are now."""
    target = next(t for t in tasks if t.name == toy_suite.TARGET)
    model = avil.models.MultiTaskModel(encoder, {t.name: t.head for t in tasks})
    outputs, labels = predict(model, target, "test", 512, torch.device("cpu"))
    return float(target.metric_fn(outputs, labels))


# A run whose dev metric peaks before its last epoch (a high lr overfits 100 target examples).
PEAKS_EARLY = dict(epochs=8, lr=3e-2, method="uniform")


# -- the best model back ------------------------------------------------------------------

def test_the_returned_model_is_the_one_history_test_reports():
    history, encoder, tasks = fit(**PEAKS_EARLY)
    assert history.best_epoch < history.epochs  # else the test could not tell best from last
    assert model_test_metric(encoder, tasks) == history.test
    history, encoder, tasks = fit(**PEAKS_EARLY, load_best_model_at_end=False)
    assert model_test_metric(encoder, tasks) == history.test_per_epoch[-1] != history.test


class StopAfter:
    """A callback that interrupts the run after ``epochs`` epochs (its checkpoint is written)."""

    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, epoch, history):
        if epoch == self.epochs:
            raise KeyboardInterrupt


def test_the_best_model_is_kept_beside_the_checkpoint_and_comes_back_after_a_resume(tmp_path):
    uninterrupted, encoder, tasks = fit(**PEAKS_EARLY)
    directory = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit(**PEAKS_EARLY, checkpoint_dir=directory, callbacks=[StopAfter(uninterrupted.best_epoch + 1)])
    best = checkpoint.load(directory, checkpoint.BEST_FILENAME)  # checksummed, weights_only
    assert best["epoch"] == uninterrupted.best_epoch
    resumed, encoder, tasks = fit(**PEAKS_EARLY, checkpoint_dir=directory, resume=True)
    assert resumed == uninterrupted
    assert model_test_metric(encoder, tasks) == uninterrupted.test


def test_a_missing_best_model_file_is_named_on_resume(tmp_path):
    directory = tmp_path / "ckpt"
    history, _, _ = fit(**PEAKS_EARLY)
    with pytest.raises(KeyboardInterrupt):
        fit(**PEAKS_EARLY, checkpoint_dir=directory, callbacks=[StopAfter(history.best_epoch + 1)])
    (directory / checkpoint.BEST_FILENAME).unlink()
    with pytest.raises(checkpoint.CheckpointError, match=r"best.pt is missing.*Fix"):
        fit(**PEAKS_EARLY, checkpoint_dir=directory, resume=True)


def test_a_best_model_file_of_another_run_is_refused_on_resume(tmp_path):
    history, _, _ = fit(**PEAKS_EARLY)
    stop = [StopAfter(history.best_epoch + 1)]
    for name, lr in (("mine", PEAKS_EARLY["lr"]), ("other", 2 * PEAKS_EARLY["lr"])):
        with pytest.raises(KeyboardInterrupt):
            fit(**{**PEAKS_EARLY, "lr": lr}, checkpoint_dir=tmp_path / name, callbacks=stop)
    # another run's best model, valid on its own: only the digest the checkpoint recorded tells them apart
    (tmp_path / "mine" / checkpoint.BEST_FILENAME).write_bytes((tmp_path / "other" / checkpoint.BEST_FILENAME).read_bytes())
    with pytest.raises(checkpoint.CheckpointError, match=r"best.pt is intact but is not the file .* recorded"):
        fit(**PEAKS_EARLY, checkpoint_dir=tmp_path / "mine", resume=True)


# -- schedules, weight decay, clipping -----------------------------------------------------

@pytest.mark.parametrize("kind, warmup", [("linear", 0.1), ("cosine", 0.25), ("constant", 0.3), ("linear", 0.0)])
def test_the_schedule_is_transformers_own(kind, warmup):
    transformers = pytest.importorskip("transformers")
    total = 40
    reference = {"linear": transformers.get_linear_schedule_with_warmup,
                 "cosine": transformers.get_cosine_schedule_with_warmup,
                 "constant": lambda opt, w, t: transformers.get_constant_schedule_with_warmup(opt, w)}[kind]
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = reference(opt, math.ceil(warmup * total), total)
    expected = []
    for _ in range(total):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    config = avil.FitConfig(lr_scheduler_type=kind, warmup_ratio=warmup)
    assert [optim.schedule_factor(s, total, config) for s in range(total)] == pytest.approx(expected, abs=1e-12)


def test_each_alpha_vil_task_runs_its_own_schedule_over_its_own_steps():
    epochs, batch = 4, 32
    history, _, tasks = fit(epochs=epochs, batch_size=batch, lr=1e-2, lr_scheduler_type="linear", warmup_ratio=0.1)
    for t in tasks:
        steps = -(-len(t.train) // batch)  # its pass: one step per batch
        total, warmup = epochs * steps, math.ceil(0.1 * epochs * steps)
        for epoch, rates in enumerate(history.lr):
            last = (epoch + 1) * steps - 1
            assert rates[t.name] == pytest.approx(1e-2 * (last / warmup if last < warmup
                                                          else (total - last) / (total - warmup)))
    assert history.lr[0][toy_suite.TARGET] != history.lr[0]["noise"]  # 4 steps per epoch against 10


def test_the_optimizer_steps_at_the_rate_history_records(monkeypatch):
    seen = []
    step = optim.Stepper.step

    def spy(self):
        step(self)
        seen.append(self.optimizer.param_groups[0]["lr"])

    monkeypatch.setattr(optim.Stepper, "step", spy)
    history, _, _ = fit(method="uniform", epochs=2, lr=1e-2, lr_scheduler_type="cosine", warmup_ratio=0.2)
    per_epoch = len(seen) // 2
    assert [seen[per_epoch - 1], seen[-1]] == [h["model"] for h in history.lr]
    assert seen[0] == 0.0 and max(seen) == pytest.approx(1e-2, rel=0.05)  # warmup from 0, then the peak


def test_weight_decay_skips_biases_and_norm_layers_as_transformers_does():
    transformers = pytest.importorskip("transformers")
    from transformers.trainer_pt_utils import get_parameter_names

    bert = transformers.AutoModel.from_config(transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32))
    names = dict((id(p), n) for n, p in bert.named_parameters())
    ours = {names[i] for i in optim.decayed_parameters(bert)}
    theirs = set(get_parameter_names(bert, [nn.LayerNorm], [r"bias", r"layernorm", r"rmsnorm",
                                                            r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]))
    assert ours == theirs and "embeddings.word_embeddings.weight" in ours
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.GroupNorm(2, 4))
    assert optim.decayed_parameters(net) == {id(net[0].weight)}  # every normalisation layer, by type
    model = avil.models.MultiTaskModel(nn.Linear(4, 4), {"norm": nn.Linear(4, 2), "bias_probe": nn.Linear(4, 2)})
    heads = optim.decayed_parameters(model)  # a task's name is not a parameter's kind
    assert {id(model.heads["norm"].weight), id(model.heads["bias_probe"].weight)} <= heads


def test_adamw_decays_the_weights_it_should_and_no_others():
    net = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    config = avil.FitConfig(optimizer="adamw", weight_decay=0.5, lr=0.1)
    stepper = optim.Stepper(net.parameters(), config, 1, optim.decayed_parameters(net), torch.device("cpu"))
    before = [p.detach().clone() for p in net.parameters()]
    for p in net.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay moves a weight
    stepper.step()
    moved = [not torch.equal(a, p) for a, p in zip(before, net.parameters())]
    assert moved == [True, False, False, False]  # linear weight decays; bias, norm weight and bias do not
    assert torch.allclose(net[0].weight, before[0] * (1 - 0.1 * 0.5))


def test_max_grad_norm_clips_the_update():
    def update(max_grad_norm):
        p = nn.Parameter(torch.zeros(4))
        config = avil.FitConfig(optimizer="sgd", lr=1.0, max_grad_norm=max_grad_norm)
        stepper = optim.Stepper([p], config, 1, set(), torch.device("cpu"))
        p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])  # norm 5
        stepper.step()
        return p.detach().norm().item()

    assert update(None) == pytest.approx(5.0) and update(0.5) == pytest.approx(0.5)


# -- mixed precision ----------------------------------------------------------------------

def dtype_spy(tasks):
    """Record the target head's output dtypes in training and in eval mode."""
    seen = {"train": set(), "eval": set()}
    target = tasks[0]
    loss_fn = target.loss_fn

    def spy(out, y, **kw):
        seen["train" if torch.is_grad_enabled() and target.head.training else "eval"].add(out.dtype)
        return loss_fn(out, y, **kw)

    target.loss_fn = spy
    return seen


@pytest.mark.parametrize("half, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_autocast_trains_in_half_precision_and_the_alpha_step_stays_float32(half, dtype):
    tasks = toy_suite.make_tasks(0, n_aux=300, n_dev=100, n_test=300)
    seen = dtype_spy(tasks)
    history, _, _ = fit(tasks=tasks, epochs=6, **{half: True})
    assert seen["train"] == {dtype} and seen["eval"] == {torch.float32}  # task passes / α-step
    assert history.test > 0.25 + 0.15  # it trains: above chance (4 classes)


def test_fp16_steps_through_a_grad_scaler_whose_state_is_checkpointed(tmp_path):
    fit(epochs=1, fp16=True, checkpoint_dir=tmp_path)
    optimizers = checkpoint.load(tmp_path)["method"]["optimizers"]
    assert all("scaler" in state and state["scaler"]["scale"] > 0 for state in optimizers.values())


# -- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("optimizer", "lamb", r"must be one of \('adam', 'adamw', 'sgd'\)"),
    ("weight_decay", -0.1, "must be a finite number ≥ 0"),
    ("weight_decay", True, "must be a finite number ≥ 0"),
    ("lr_scheduler_type", "step", r"must be one of \('constant', 'linear', 'cosine'\)"),
    ("warmup_ratio", 1.0, r"must be a number in \[0, 1\)"),
    ("warmup_ratio", -0.1, r"must be a number in \[0, 1\)"),
    ("max_grad_norm", 0.0, "must be a finite number > 0, or None"),
    ("max_grad_norm", math.inf, "must be a finite number > 0, or None"),
    ("bf16", 1, "must be True or False"),
    ("fp16", "yes", "must be True or False"),
    ("load_best_model_at_end", None, "must be True or False"),
])
def test_each_new_field_refuses_bad_values_with_the_fix(field, value, message):
    with pytest.raises(ValueError, match=rf"FitConfig\.{field} = .*{message}.*Fix"):
        avil.FitConfig(**{field: value}).validate()


def test_weight_decay_needs_adamw_and_one_half_type_at_a_time():
    with pytest.raises(ValueError, match=r"weight_decay = 0.01 with optimizer='adam'.*Fix: .*optimizer='adamw'"):
        avil.FitConfig(weight_decay=0.01).validate()
    with pytest.raises(ValueError, match=r"bf16 = True and FitConfig.fp16 = True.*Fix"):
        avil.FitConfig(bf16=True, fp16=True).validate()


def test_a_resume_cannot_stretch_a_schedule(tmp_path):
    fit(epochs=2, lr_scheduler_type="linear", checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"'linear' schedule .* over 2 epochs, and this call asks for 3.*Fix"):
        fit(epochs=3, lr_scheduler_type="linear", checkpoint_dir=tmp_path, resume=True)


# -- callbacks and TensorBoard -------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.calls = []

    def on_epoch_end(self, epoch, history):
        self.calls.append((epoch, history.epochs))

    def on_fit_end(self, history):
        self.calls.append(("end", history.epochs))


def test_callbacks_see_every_epoch_then_the_end():
    recorder = Recorder()
    fit(epochs=3, callbacks=[recorder])
    assert recorder.calls == [(1, 1), (2, 2), (3, 3), ("end", 3)]


def test_a_callback_without_on_epoch_end_is_refused_before_training():
    with pytest.raises(TypeError, match=r"has no callable on_epoch_end\. Fix"):
        fit(epochs=1, callbacks=[object()])


def read_scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_event_files_hold_the_logged_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    history, _, tasks = fit(epochs=3, callbacks=[avil.callbacks.TensorBoard(tmp_path)])
    scalars = read_scalars(tmp_path)

    def logged(tag, values):  # every epoch, at its 1-based step, with the value History holds
        assert [step for step, _ in scalars[tag]] == [1, 2, 3], tag
        assert [value for _, value in scalars[tag]] == pytest.approx(values, rel=1e-6), tag

    logged("target/dev", history.dev)
    logged("target/test", history.test_per_epoch)
    for t in tasks:
        logged(f"alpha/{t.name}", [a[t.name] for a in history.alphas])
        logged(f"task_weight/{t.name}", [w[t.name] for w in history.task_weights])
        logged(f"train_loss/{t.name}", [loss[t.name] for loss in history.train_loss])
        logged(f"lr/{t.name}", [lr[t.name] for lr in history.lr])
    for key in ("loss_init", "loss_final", "evaluations"):
        logged(f"alpha_step/{key}", [s[key] for s in history.alpha_step])
    logged("alpha_step/seconds", history.alpha_step_seconds)


def test_tensorboard_writes_on_rank_0_only(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    history, _, _ = fit(epochs=1)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    for rank in (1, 0):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        board = avil.callbacks.TensorBoard(tmp_path / f"rank{rank}")
        board.on_epoch_end(1, history)
        board.on_fit_end(history)
    assert not (tmp_path / "rank1").exists() and read_scalars(tmp_path / "rank0")["target/dev"]


def test_tensorboard_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"needs the tensorboard package.*pip install 'avil\[tensorboard\]'"):
        avil.callbacks.TensorBoard("runs")


# -- Hugging Face rows -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    from avil.tasks import nlu

    return transformers.AutoTokenizer.from_pretrained(nlu.minilm_path())


def rows(tokenizer, n, rule, **columns):
    from datasets import Dataset

    words = "good bad film plot actor scene".split()
    texts = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(2 + i % 5)) for i in range(n)]
    data = Dataset.from_dict({"text": texts, "label": [rule(t) for t in texts], **columns})
    return data.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])


def text_task(tokenizer, name="good", collate=True, **kwargs):
    from transformers import DataCollatorWithPadding

    rule = lambda t: int(name in t.split())  # noqa: E731
    return avil.Task(name, rows(tokenizer, 64, rule), rows(tokenizer, 16, rule), rows(tokenizer, 16, rule),
                     head=nn.Linear(16, 2), loss_fn=F.cross_entropy, metric_fn=avil.metrics.accuracy,
                     collate_fn=DataCollatorWithPadding(tokenizer) if collate else None,
                     **{"label_column": "label", **kwargs})


def tiny_encoder(tokenizer):
    import transformers
    from avil.tasks import nlu

    torch.manual_seed(0)
    return nlu.TextEncoder(transformers.AutoModel.from_config(transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32)))


def test_datasets_rows_with_a_hugging_face_collator_train(tokenizer):
    tasks = [text_task(tokenizer, "good"), text_task(tokenizer, "film")]
    x, y = tasks[0].collate_fn([tasks[0].train[i] for i in range(3)])
    assert set(x) == {"input_ids", "token_type_ids", "attention_mask"} and y.dtype == torch.long
    assert x["input_ids"].shape[0] == 3 and "label" not in x and "labels" not in x
    history = avil.fit(tiny_encoder(tokenizer), tasks, "good", "avil", avil.FitConfig(epochs=2, **QUIET))
    assert len(history.dev) == 2 and all(math.isfinite(a) for a in history.alphas[-1].values())


def test_a_missing_label_column_is_named_with_the_columns_there(tokenizer):
    with pytest.raises(ValueError, match=r"Task 'good': the train split has no label column 'sentiment' "
                                         r"\(its columns: \['label', 'input_ids', .*Fix"):
        text_task(tokenizer, label_column="sentiment")


def test_string_labels_are_refused_with_the_fix(tokenizer):
    task = text_task(tokenizer)
    task.train.rows = task.train.rows.cast_column("label", __import__("datasets").Value("string"))
    with pytest.raises(ValueError, match=r"label column 'label' holds '[01]' in row 0, not a number.*"
                                         r"class_encode_column"):
        avil.fit(tiny_encoder(tokenizer), [task], "good", "single_task", avil.FitConfig(epochs=1, **QUIET))


def test_a_ragged_row_deep_in_a_split_is_refused_before_training(tokenizer):
    from datasets import Dataset

    rows = {"x": [[1.0, 2.0]] * 40 + [[1.0, 2.0, 3.0]] + [[1.0, 2.0]] * 3, "label": [0, 1] * 22}
    splits = [Dataset.from_dict(rows) for _ in range(3)]
    task = avil.Task("t", *splits, head=nn.Linear(2, 2), loss_fn=F.cross_entropy, metric_fn=avil.metrics.accuracy,
                     label_column="label")
    with pytest.raises(ValueError, match=r"Task 't': the train split's column 'x' has rows of different shapes "
                                         r"\(\(2,\) in row 0, \(3,\) in row 40\).*Fix"):
        avil.fit(Column("x"), [task], "t", "single_task", avil.FitConfig(epochs=1, **QUIET))


class Column(nn.Module):
    """An encoder of dict rows: one column, as it is."""

    def __init__(self, name):
        super().__init__()
        self.name, self.scale = name, nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x[self.name].float() * self.scale


def test_ragged_rows_without_a_collator_are_refused_with_the_fix(tokenizer):
    task = text_task(tokenizer, collate=False)
    with pytest.raises(ValueError, match=r"Task 'good': the train split: its first two items cannot be made into a "
                                         r"batch.*'input_ids' has rows of different shapes.*DataCollatorWithPadding"):
        avil.fit(tiny_encoder(tokenizer), [task], "good", "single_task", avil.FitConfig(epochs=1, **QUIET))
