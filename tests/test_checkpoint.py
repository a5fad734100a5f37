"""Checkpoints: a run killed with SIGKILL and resumed equals an uninterrupted run."""
import inspect
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import avil
from avil import checkpoint
from avil.tasks import toy as toy_suite
from mounts import read_only_dir  # noqa: F401 (a fixture)

EPOCHS = 6

def make_encoder(kind):
    """The toy MLP, or one with BatchNorm (running statistics: float buffers, and a counter)."""
    torch.manual_seed(0)
    if kind == "mlp":
        return toy_suite.make_encoder(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU())


SCRIPT = textwrap.dedent("""
    import json, sys, time
    import torch
    import torch.nn.functional as F
    import avil
    from avil.tasks import toy as toy_suite

    checkpoint_dir, out, resume, encoder = sys.argv[1], sys.argv[2], sys.argv[3] == "resume", sys.argv[4]
    options = json.loads(sys.argv[5])

    def slow_cross_entropy(outputs, y, reduction="mean"):
        time.sleep(0.02)  # ~0.3 s per epoch, so that the parent can kill it mid-training
        return F.cross_entropy(outputs, y, reduction=reduction)

    tasks = toy_suite.make_tasks(0)
    tasks[0].loss_fn = slow_cross_entropy
    config = avil.FitConfig(epochs={epochs}, progress=False, checkpoint_dir=checkpoint_dir, **options)
    history = avil.fit(make_encoder(encoder), tasks, toy_suite.TARGET, "avil", config, resume=resume)
    history.to_json(out)
""").format(epochs=EPOCHS).replace("\ncheckpoint_dir", "\n" + inspect.getsource(make_encoder) + "\ncheckpoint_dir", 1)


def saved_epochs(directory):
    try:
        state = checkpoint.load(directory)
    except Exception:  # a concurrent rename; the next poll sees the new file
        return 0
    return 0 if state is None else len(state["history"]["dev"])


# A fine-tuning run's knobs: the resumed run must continue the schedule, the
# AdamW moments with their decay groups and the clipping where they stopped.
OPTIONS = {"defaults": {},
           "schedule, weight decay, clipping": dict(optimizer="adamw", weight_decay=0.01, lr_scheduler_type="linear",
                                                    warmup_ratio=0.2, max_grad_norm=0.5),
           "cosine, bf16 autocast": dict(lr_scheduler_type="cosine", bf16=True)}


@pytest.mark.parametrize("encoder, options", [("mlp", "defaults"), ("batchnorm", "defaults"),
                                              ("mlp", "schedule, weight decay, clipping"),
                                              ("mlp", "cosine, bf16 autocast")])
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, encoder, options):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    ckpt = tmp_path / "ckpt"
    options = OPTIONS[options]
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), str(tmp_path / "a.json"), "fresh", encoder,
                             json.dumps(options)])
    deadline = time.time() + 300
    while saved_epochs(ckpt) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = saved_epochs(ckpt)
    assert 2 <= done < EPOCHS

    subprocess.run([sys.executable, str(script), str(ckpt), str(tmp_path / "resumed.json"), "resume", encoder,
                    json.dumps(options)], check=True, timeout=600)
    resumed = avil.History.from_json(tmp_path / "resumed.json")

    uninterrupted = avil.fit(make_encoder(encoder), toy_suite.make_tasks(0), toy_suite.TARGET, "avil",
                             avil.FitConfig(epochs=EPOCHS, progress=False, **options))
    assert resumed == uninterrupted  # exact: every weight, α, learning rate and metric of every epoch
    assert resumed.epochs == EPOCHS


@pytest.mark.parametrize("method", ["single_task", "uniform", "avil"])
def test_resume_in_process_matches(tmp_path, method):
    def run(epochs, resume):
        config = avil.FitConfig(epochs=epochs, progress=False, checkpoint_dir=str(tmp_path / method))
        return avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, method,
                        config, resume=resume)

    run(2, resume=False)
    assert run(4, resume=True) == avil.fit(
        toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, method,
        avil.FitConfig(epochs=4, progress=False))


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    config = avil.FitConfig(epochs=1, progress=False, checkpoint_dir=str(tmp_path))
    avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, "uniform", config)
    with pytest.raises(ValueError, match="another run.*method"):
        avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, "avil",
                 config, resume=True)
    other_batches = avil.FitConfig(epochs=2, batch_size=16, progress=False, checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match="FitConfig.batch_size: checkpoint has 32, this call 16"):
        avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, "uniform",
                 other_batches, resume=True)


def test_checkpoint_write_is_atomic(tmp_path):
    checkpoint.save(tmp_path, {"x": torch.ones(3)})
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.FILENAME]
    assert torch.equal(checkpoint.load(tmp_path)["x"], torch.ones(3))


def fit(directory, epochs=1, method="uniform", encoder="mlp", resume=False, overwrite=False, **config):
    cfg = avil.FitConfig(epochs=epochs, progress=False, checkpoint_dir=str(directory), **config)
    return avil.fit(make_encoder(encoder), toy_suite.make_tasks(0), toy_suite.TARGET, method, cfg,
                    resume=resume, overwrite=overwrite)


# -- finding 5: the whole model state is checkpointed --------------------------------------------------

@pytest.mark.parametrize("method", ["uniform", "avil"])
def test_resume_with_batchnorm_restores_statistics_and_counters(tmp_path, method):
    def state_after(epochs, directory, resume):
        encoder = make_encoder("batchnorm")
        config = avil.FitConfig(epochs=epochs, progress=False, checkpoint_dir=directory)
        history = avil.fit(encoder, toy_suite.make_tasks(0), toy_suite.TARGET, method, config, resume=resume)
        return history, {k: v.clone() for k, v in encoder.state_dict().items()}

    state_after(2, str(tmp_path / "a"), resume=False)
    resumed, resumed_state = state_after(3, str(tmp_path / "a"), resume=True)
    uninterrupted, uninterrupted_state = state_after(3, None, resume=False)
    assert resumed == uninterrupted
    assert resumed_state.keys() == uninterrupted_state.keys()
    for name, value in uninterrupted_state.items():  # running stats and num_batches_tracked included
        assert torch.equal(resumed_state[name], value), name
    assert int(uninterrupted_state["1.num_batches_tracked"]) > 0


# -- finding 3: checkpoints cannot run code and are verified ----------------------------------------------

class RunsCode:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('code ran')",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = {"x": RunsCode()}
    torch.save({"format": checkpoint.FORMAT, "sha256": "0" * 64, "state": state}, tmp_path / checkpoint.FILENAME)
    with pytest.raises(checkpoint.CheckpointError, match=rf"refused to load {tmp_path}/checkpoint.pt: it holds "
                                                         r"objects other than tensors.*Fix"):
        checkpoint.load(tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_a_truncated_checkpoint_names_the_file_and_the_fix(tmp_path):
    fit(tmp_path)
    path = tmp_path / checkpoint.FILENAME
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(checkpoint.CheckpointError, match=rf"cannot read the checkpoint {path}: the file is damaged"
                                                         r".*Fix: restore the file from a backup, or start afresh "
                                                         r"with avil.fit\(\.\.\., overwrite=True\)"):
        fit(tmp_path, epochs=2, resume=True)


def test_a_checkpoint_altered_after_writing_fails_its_integrity_check(tmp_path):
    checkpoint.save(tmp_path, {"x": torch.arange(1000, dtype=torch.float32)})
    path = tmp_path / checkpoint.FILENAME
    raw = bytearray(path.read_bytes())
    at = raw.find(torch.tensor([500.0]).numpy().tobytes())  # a float inside the stored tensor
    raw[at + 3] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(checkpoint.CheckpointError, match=rf"{path} fails its integrity check.*Fix"):
        checkpoint.load(tmp_path)


def test_a_wrong_digest_is_refused(tmp_path):
    state = {"x": torch.ones(3)}
    torch.save({"format": checkpoint.FORMAT, "sha256": checkpoint.digest({"x": torch.zeros(3)}), "state": state},
               tmp_path / checkpoint.FILENAME)
    with pytest.raises(checkpoint.CheckpointError, match="fails its integrity check.*Fix"):
        checkpoint.load(tmp_path)


def test_a_checkpoint_of_the_old_format_is_refused_with_the_fix(tmp_path):
    torch.save({"flat": torch.ones(3)}, tmp_path / checkpoint.FILENAME)
    with pytest.raises(checkpoint.CheckpointError, match="is not an avil checkpoint of format 2.*Fix"):
        checkpoint.load(tmp_path)


def test_a_digest_covers_every_tensor_byte_key_and_value():
    state = {"a": torch.ones(3), "b": [1, 2.5, "x", None], "c": {0: torch.zeros(2, dtype=torch.bfloat16)}}
    d = checkpoint.digest(state)
    assert checkpoint.digest({**state}) == d
    assert checkpoint.digest({**state, "a": torch.tensor([1.0, 1.0, 1.0 + 2 ** -20])}) != d
    assert checkpoint.digest({**state, "b": [1, 2.5, "y", None]}) != d
    assert checkpoint.digest({**state, "a": torch.ones(3, dtype=torch.float64)}) != d
    assert checkpoint.digest({"b": state["b"], "a": state["a"], "c": state["c"]}) != d


# -- finding 4: checkpoint_dir safety -----------------------------------------------------------

def test_a_fresh_run_refuses_another_runs_checkpoint_unless_overwrite(tmp_path):
    fit(tmp_path)
    before = (tmp_path / checkpoint.FILENAME).read_bytes()
    with pytest.raises(ValueError, match=r"already holds a checkpoint .*Fix: pass resume=True to continue that "
                                         r"run, overwrite=True to replace it, or another checkpoint_dir"):
        fit(tmp_path, method="single_task")
    assert (tmp_path / checkpoint.FILENAME).read_bytes() == before
    history = fit(tmp_path, method="single_task", overwrite=True)
    assert checkpoint.load(tmp_path)["history"]["method"] == "single_task" == history.method
    with pytest.raises(ValueError, match="pass only one of them"):
        fit(tmp_path, resume=True, overwrite=True)


def test_a_second_run_on_a_locked_directory_is_refused(tmp_path):
    with checkpoint.locked(tmp_path):  # what a concurrent run holds
        with pytest.raises(checkpoint.CheckpointError, match=rf"checkpoint_dir = '{tmp_path}' is in use by another "
                                                             rf"avil.fit run \(process {os.getpid()} holds"):
            fit(tmp_path)
    assert not (tmp_path / checkpoint.FILENAME).exists()
    fit(tmp_path)  # released: the next run may go


def test_the_lock_is_released_when_a_run_fails(tmp_path, monkeypatch):
    def fail(self, epoch):
        raise avil.TrainingError("boom")

    monkeypatch.setattr(avil.METHODS["uniform"], "train_epoch", fail)
    with pytest.raises(avil.TrainingError, match="boom"):
        fit(tmp_path)
    monkeypatch.undo()
    assert fit(tmp_path, overwrite=True).epochs == 1


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if an epoch starts."""
    def train_epoch(self, epoch):
        raise AssertionError("training started before the input was checked")

    for cls in avil.METHODS.values():
        monkeypatch.setattr(cls, "train_epoch", train_epoch)


def test_a_checkpoint_dir_that_is_a_file_fails_before_training(tmp_path, no_training):
    path = tmp_path / "a_file"
    path.write_text("not a directory")
    with pytest.raises(ValueError, match=rf"FitConfig.checkpoint_dir = '{path}' is not a writable directory.*Fix"):
        fit(path)
    with pytest.raises(ValueError, match="FitConfig.checkpoint_dir = .*is not a writable directory.*embedded null"):
        fit("bad\0name")


def test_a_read_only_checkpoint_dir_fails_before_training(read_only_dir, no_training):
    with pytest.raises(ValueError, match=rf"FitConfig.checkpoint_dir = '{read_only_dir}' is not a writable "
                                         r"directory \(.*Read-only file system.*Fix"):
        fit(read_only_dir)


def test_a_failed_save_leaves_no_temp_file_and_the_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, {"x": torch.ones(3)})

    def full_disk(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(checkpoint.CheckpointError, match=r"could not write the checkpoint .*No space left on device"
                                                         r"\); the previous checkpoint there is intact. Fix: free "
                                                         r"disk space"):
        checkpoint.save(tmp_path, {"x": torch.zeros(3)})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.FILENAME]
    assert torch.equal(checkpoint.load(tmp_path)["x"], torch.ones(3))


# -- finding 8: resume rules ---------------------------------------------------------------------------

def test_resume_may_change_lr_and_eval_batch_size_and_records_them(tmp_path):
    fit(tmp_path, epochs=1)
    history = fit(tmp_path, epochs=2, resume=True, lr=5e-4, eval_batch_size=100)
    assert history.config["lr"] == 5e-4 and history.config["eval_batch_size"] == 100
    assert history.resumes == [{"epoch": 1, "changed": {"epochs": [1, 2], "lr": [1e-3, 5e-4],
                                                        "eval_batch_size": [512, 100]}}]


def test_a_changed_lr_on_resume_is_what_the_optimizers_use(tmp_path, monkeypatch):
    fit(tmp_path, epochs=1)
    seen = []
    train_epoch = avil.METHODS["uniform"].train_epoch

    def spy(self, epoch):
        seen.append(self.optimizers["model"].optimizer.param_groups[0]["lr"])
        return train_epoch(self, epoch)

    monkeypatch.setattr(avil.METHODS["uniform"], "train_epoch", spy)
    fit(tmp_path, epochs=2, resume=True, lr=5e-4)
    assert seen == [5e-4]


def test_resume_refuses_fewer_epochs_than_saved(tmp_path):
    fit(tmp_path, epochs=2)
    with pytest.raises(ValueError, match=r"has already trained 2 epochs, more than FitConfig.epochs = 1. Fix: pass "
                                         r"epochs ≥ 2"):
        fit(tmp_path, epochs=1, resume=True)
    assert fit(tmp_path, epochs=2, resume=True).epochs == 2


def test_resume_with_another_encoder_names_the_difference(tmp_path):
    fit(tmp_path)
    with pytest.raises(ValueError, match=r"cannot resume: .* was written for another model \(.*first difference: "
                                         r"checkpoint has encoder.net.0.weight \(32, 20\), this model encoder.0.weight"
                                         r" \(32, 20\)\). Fix"):
        fit(tmp_path, epochs=2, resume=True, encoder="batchnorm")
