"""Checkpoints: a run killed with SIGKILL and resumed equals an uninterrupted run."""
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

EPOCHS = 6

SCRIPT = textwrap.dedent("""
    import sys, time
    import torch.nn.functional as F
    import avil
    from avil.tasks import toy

    checkpoint_dir, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "resume"

    def slow_cross_entropy(outputs, y, reduction="mean"):
        time.sleep(0.02)  # ~0.3 s per epoch, so that the parent can kill it mid-training
        return F.cross_entropy(outputs, y, reduction=reduction)

    tasks = toy.make_tasks(0)
    tasks[0].loss_fn = slow_cross_entropy
    config = avil.FitConfig(epochs={epochs}, progress=False, checkpoint_dir=checkpoint_dir)
    history = avil.fit(toy.make_encoder(0), tasks, toy.TARGET, "avil", config, resume=resume)
    history.to_json(out)
""").format(epochs=EPOCHS)


def saved_epochs(directory):
    try:
        state = checkpoint.load(directory)
    except Exception:  # a concurrent rename; the next poll sees the new file
        return 0
    return 0 if state is None else len(state["history"]["dev"])


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), str(tmp_path / "a.json"), "fresh"])
    deadline = time.time() + 300
    while saved_epochs(ckpt) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = saved_epochs(ckpt)
    assert 2 <= done < EPOCHS

    subprocess.run([sys.executable, str(script), str(ckpt), str(tmp_path / "resumed.json"), "resume"],
                   check=True, timeout=600)
    resumed = avil.History.from_json(tmp_path / "resumed.json")

    uninterrupted = avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, "avil",
                             avil.FitConfig(epochs=EPOCHS, progress=False))
    assert resumed == uninterrupted  # exact: every weight, α and metric of every epoch
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
    other_lr = avil.FitConfig(epochs=2, lr=0.1, progress=False, checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match="FitConfig.lr"):
        avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, "uniform",
                 other_lr, resume=True)


def test_checkpoint_write_is_atomic(tmp_path):
    checkpoint.save(tmp_path, {"x": torch.ones(3)})
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.FILENAME]
    assert torch.equal(checkpoint.load(tmp_path)["x"], torch.ones(3))
