"""Task-parallel αVIL (avil/distributed/): the same avil.fit under a process group.

Runs with P = 1 use a gloo group inside the test process; runs with P = 2 launch
two processes with torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, ...),
or torchrun itself, on the toy suite.
"""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import avil
from avil import checkpoint, distributed, ops
from avil.tasks import toy as toy_suite

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent("""
    import datetime, json, os, sys, time
    import torch
    import torch.nn.functional as F
    import avil
    from avil.tasks import toy as toy_suite

    torch.set_num_threads(1)
    args = json.loads(sys.argv[1])
    device = avil.distributed.init(timeout=datetime.timedelta(seconds=args["timeout"]),
                                   dev_gradient=args["dev_gradient"])

    def slow_cross_entropy(out, y, reduction="mean"):  # so that the test can stop a rank mid-run
        time.sleep(args["sleep"])
        return F.cross_entropy(out, y, reduction=reduction)

    def nan_in_training(out, y):  # avil.fit's checks before training run without gradients
        return F.cross_entropy(out, y) * (float("nan") if torch.is_grad_enabled() else 1.0)

    tasks = toy_suite.make_tasks(0)
    for t in tasks:
        if args["sleep"] and t.loss_fn is F.cross_entropy:
            t.loss_fn = slow_cross_entropy
        if t.name == args["nan_task"]:
            t.loss_fn = nan_in_training
    result = {}
    try:
        history = avil.fit(toy_suite.make_encoder(0), tasks, toy_suite.TARGET, "avil",
                           avil.FitConfig(device=device, progress=False, **args["config"]), resume=args["resume"])
        result["history"] = history.to_dict()
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"
    with open(f"{args['out']}.{os.environ['RANK']}.json", "w") as f:
        json.dump(result, f)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path, name, world_size=2, torchrun=False, timeout=60, dev_gradient="split", sleep=0.0,
           nan_task=None, resume=False, **config):
    """Start a run on ``world_size`` processes; returns (processes, out prefix)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / name
    args = json.dumps({"out": str(out), "timeout": timeout, "dev_gradient": dev_gradient, "sleep": sleep,
                       "nan_task": nan_task, "resume": resume, "config": config})
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(free_port()), WORLD_SIZE=str(world_size))
    with open(f"{out}.log", "w") as log:  # every process's stderr, for a failing test's message
        if torchrun:
            command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={world_size}",
                       f"--master-port={env['MASTER_PORT']}", str(script), args]
            return [subprocess.Popen(command, env=env, stderr=log)], out
        return [subprocess.Popen([sys.executable, str(script), args], stderr=log,
                                 env=dict(env, RANK=str(r), LOCAL_RANK=str(r))) for r in range(world_size)], out


def results(processes, out, world_size=2, timeout=120):
    for p in processes:
        p.wait(timeout=timeout)
    missing = [r for r in range(world_size) if not Path(f"{out}.{r}.json").exists()]
    assert not missing, f"ranks {missing} wrote no result:\n" + Path(f"{out}.log").read_text()[-3000:]
    return [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(world_size)]


def toy_run(resume=False, **config) -> avil.History:
    """WORKER's run in this process, on one torch thread like the workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, "avil",
                        avil.FitConfig(progress=False, **config), resume=resume)
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def group_of_one(tmp_path):
    """A gloo group of one process (this one), destroyed afterwards."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.fixture
def group(tmp_path):
    with group_of_one(tmp_path):
        yield


# -- which rank trains which task ----------------------------------------------------

def test_tasks_are_balanced_by_pass_cost_with_at_most_ceil_k_over_p_per_rank():
    # MultiMNIST extended: a scarce target (8 batches) and four auxiliaries of 94.
    costs = {"left": 8, "right": 94, "left_parity": 94, "left_magnitude": 94, "shuffled": 94}
    owner = distributed.assign_tasks(costs, 2)
    assert owner == {"left": 0, "right": 0, "left_parity": 1, "left_magnitude": 0, "shuffled": 1}
    # The cap wins over the load: one big task and three small ones on 2 ranks stay 2 + 2.
    owner = distributed.assign_tasks({"a": 100, "b": 1, "c": 1, "d": 1}, 2)
    assert sorted(list(owner.values()).count(r) for r in (0, 1)) == [2, 2]
    assert set(distributed.assign_tasks(costs, 5).values()) == set(range(5))


def test_fewer_tasks_than_processes_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"2 tasks on 3 processes.*--nproc-per-node 2"):
        distributed.assign_tasks({"a": 1, "b": 1}, 3)


@pytest.mark.skipif(ops.backend() == "reference", reason="the fused merge kernel (avil._C) is not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_each_rank_merging_its_range_alone_gives_the_single_process_merge(dtype):
    """What makes P ranks exact: the kernel's sum for one element of θ0 + Δᵀα
    does not depend on the other elements, so the ranges merged one by one
    equal the whole merge, bit for bit."""
    generator = torch.Generator().manual_seed(0)
    k, params, buffers = 5, 10_007, 131
    theta0 = torch.randn(params + buffers, generator=generator)  # (N,)
    deltas = (torch.randn(k, params + buffers, generator=generator) * 1e-2).to(dtype)  # (K, N)
    alphas = torch.rand(k, generator=generator) * 3 - 1  # (K,)
    whole = theta0.clone()
    ops.merge_(whole, deltas, alphas)
    for world_size in (2, 3, 4):
        ranges = distributed.runner.column_ranges(params, params + buffers, world_size)
        assert ranges[-1].stop == params + buffers and ranges[-1].start <= params  # the buffers on one rank
        pieces = []
        for r in ranges:
            piece = theta0[r].clone()
            ops.merge_(piece, deltas[:, r].contiguous(), alphas)
            pieces.append(piece)
        assert torch.equal(torch.cat(pieces), whole)


def test_init_outside_torchrun_names_the_fix(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc-per-node"):
        distributed.init()


README_SCRIPT = textwrap.dedent("""
    import atexit, os, sys
    import torch
    import avil
    from avil.tasks import toy as toy_suite

    def thread_name(task):
        try:
            return open(f"/proc/self/task/{task}/comm").read().strip()
        except OSError:  # the thread ended meanwhile
            return ""

    def backend_threads_at_exit():  # registered before init(), so it runs after init's own exit hook
        alive = [name for name in map(thread_name, os.listdir("/proc/self/task")) if "gloo" in name]
        print(f"rank {os.environ['RANK']}: group initialised at exit: {torch.distributed.is_initialized()}, "
              f"backend threads: {alive}", file=sys.stderr)

    if os.path.isdir("/proc/self/task"):
        atexit.register(backend_threads_at_exit)
    torch.set_num_threads(1)
    # The README's pattern: init(), fit(), and the script ends.
    device = avil.distributed.init()
    history = avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, "avil",
                       avil.FitConfig(device=device, epochs=2, progress=False))
    print(f"rank {os.environ['RANK']}: dev {history.dev[-1]}")
""")


def test_the_readme_pattern_ends_cleanly_on_every_rank_every_time(tmp_path):
    """init(), fit() and the end of the script: torchrun sees every rank exit 0,
    with the group destroyed and the backend's worker threads stopped before
    Python shuts down (a worker still running then can abort the process)."""
    script = tmp_path / "train.py"
    script.write_text(README_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for attempt in range(4):
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                               f"--master-port={free_port()}", str(script)],
                              env=env, capture_output=True, text=True, timeout=300)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"attempt {attempt + 1}:\n{output[-3000:]}"
        for rank in (0, 1):
            assert f"rank {rank}: dev " in output, output[-3000:]
            if os.path.isdir("/proc/self/task"):
                assert f"rank {rank}: group initialised at exit: False, backend threads: []" in output, output[-3000:]


def test_shutdown_destroys_the_group_and_may_run_again(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    distributed.shutdown()
    assert not dist.is_initialized()
    distributed.shutdown()  # nothing left to destroy: it also runs at exit after a shutdown() of one's own


# -- one process in a group: the same computation, bit for bit -------------------------

@pytest.mark.parametrize("dev_gradient", ["split", "once"])
def test_a_group_of_one_equals_the_single_process_run_exactly(monkeypatch, tmp_path, dev_gradient):
    monkeypatch.setitem(distributed.process_group._settings, "dev_gradient", dev_gradient)
    with group_of_one(tmp_path):
        history = toy_run(epochs=3)
    assert history == toy_run(epochs=3)


@pytest.mark.parametrize("method", ["single_task", "uniform", "gcs", "diw"])
def test_methods_that_are_not_task_parallel_are_refused_with_the_fix(group, method):
    with pytest.raises(ValueError, match=rf"method '{method}' is not task-parallel.*without torchrun"):
        avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, method,
                 avil.FitConfig(epochs=1, progress=False))


def test_checkpoints_of_the_other_mode_are_refused_with_the_fix(tmp_path):
    kwargs = dict(epochs=1, progress=False)
    single_dir, group_dir = tmp_path / "single", tmp_path / "group"
    avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, "avil",
             avil.FitConfig(checkpoint_dir=single_dir, **kwargs))
    with group_of_one(tmp_path):
        avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, "avil",
                 avil.FitConfig(checkpoint_dir=group_dir, **kwargs))
        with pytest.raises(ValueError, match="single-process run.*resume it in a single process"):
            avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, "avil",
                     avil.FitConfig(checkpoint_dir=single_dir, **kwargs), resume=True)
    assert sorted(p.name for p in group_dir.glob("task*.pt")) == [f"task{k}.epoch1.pt" for k in range(4)]
    with pytest.raises(ValueError, match="task-parallel run on 1 processes.*resume it under torchrun"):
        avil.fit(toy_suite.make_encoder(0), toy_suite.make_tasks(0), toy_suite.TARGET, "avil",
                 avil.FitConfig(checkpoint_dir=group_dir, **kwargs), resume=True)


# -- two processes -----------------------------------------------------------------

@pytest.mark.skipif(ops.backend() == "reference", reason="exact only with the fused merge kernel (avil._C)")
def test_two_processes_equal_one_process_with_the_default_alpha_solver(tmp_path):
    """Both ranks return the same History, and it is the single-process one:
    each rank merges its range of θ with the single-process kernel over all
    tasks in task order, so θ_α, the dev loss and gradient, and with them
    L-BFGS-B's steps are the same (the History is equal to the last bit; the
    bound is the one a user relies on)."""
    processes, out = launch(tmp_path, "run", epochs=3)
    expected = toy_run(epochs=3)
    history, other_rank = (avil.History.from_dict(r["history"]) for r in results(processes, out))
    assert history == other_rank
    assert expected.config["alpha_solver"] == "lbfgs"
    differences = [abs(got - want) for field in ("dev", "test_per_epoch")
                   for got, want in zip(getattr(history, field), getattr(expected, field))]
    differences += [abs(got[name] - want[name]) for field in ("alphas", "task_weights", "train_loss")
                    for got, want in zip(getattr(history, field), getattr(expected, field)) for name in want]
    assert len(differences) == 2 * 3 + 3 * 3 * 4
    assert max(differences) <= 1e-6
    assert history.alphas != [{name: 1.0 for name in history.tasks}] * 3  # the α-step moved α


def test_a_killed_rank_stops_the_other_and_resume_under_torchrun_equals_the_uninterrupted_run(tmp_path):
    config = dict(epochs=3, checkpoint_dir=str(tmp_path / "killed"))
    killed, out = launch(tmp_path, "killed", sleep=0.01, timeout=20, dev_gradient="once", **config)
    reference, reference_out = launch(tmp_path, "reference", dev_gradient="once",
                                      **dict(config, checkpoint_dir=str(tmp_path / "reference")))
    while not checkpoint.exists(config["checkpoint_dir"]):  # the first epoch is saved
        assert killed[0].poll() is None, "rank 0 ended before its first checkpoint"
        time.sleep(0.05)
    killed[1].send_signal(signal.SIGKILL)
    start = time.perf_counter()
    killed[0].wait(timeout=60)
    assert time.perf_counter() - start < 30  # the collective timeout is 20 s; a dead peer is seen at once
    error = json.loads(Path(f"{out}.0.json").read_text())["error"]
    assert "rank 0 of 2" in error and "Another process of the run died" in error and distributed.RESUME in error

    state = checkpoint.load(config["checkpoint_dir"])  # intact: verified, with every task's file
    saved = len(state["history"]["dev"])
    assert 1 <= saved < 3
    for name, (filename, digest) in state["distributed"]["files"].items():
        assert checkpoint.load(config["checkpoint_dir"], filename, expected_digest=digest)["task"] == name

    resumed, resumed_out = launch(tmp_path, "resumed", torchrun=True, dev_gradient="once", resume=True, **config)
    histories = results(resumed, resumed_out) + results(reference, reference_out)
    assert all("history" in h for h in histories), histories
    resumed_history, other_rank, uninterrupted, _ = (avil.History.from_dict(h["history"]) for h in histories)
    assert resumed_history == uninterrupted
    assert resumed_history == other_rank
    assert resumed_history.resumes == [{"epoch": saved, "changed": {}}]

    # Another P: one process goes on from the 2-process checkpoint, loading every task's file.
    with group_of_one(tmp_path):
        longer = toy_run(**dict(config, epochs=4), resume=True)
    assert longer.resumes[-1] == {"epoch": 3, "changed": {"epochs": [3, 4], "world_size": [2, 1]}}
    assert longer.dev[:3] == uninterrupted.dev and longer.alphas[:3] == uninterrupted.alphas
    assert len(longer.dev) == 4


def test_a_hung_rank_stops_the_other_after_the_collective_timeout(tmp_path):
    config = dict(epochs=3, checkpoint_dir=str(tmp_path / "hung"))
    processes, out = launch(tmp_path, "hung", sleep=0.01, timeout=8, **config)
    while not checkpoint.exists(config["checkpoint_dir"]):
        assert processes[0].poll() is None, "rank 0 ended before its first checkpoint"
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGSTOP)  # alive, its connections open, but silent
    try:
        start = time.perf_counter()
        processes[0].wait(timeout=60)
        assert time.perf_counter() - start < 30  # the 8 s timeout and the rest of rank 0's epoch
    finally:
        processes[1].kill()
    error = json.loads(Path(f"{out}.0.json").read_text())["error"]
    assert "rank 0 of 2" in error and "Timed out" in error  # gloo's words for the timeout
    assert checkpoint.load(config["checkpoint_dir"])["history"]["dev"]  # intact, at least one epoch


def test_an_error_on_one_rank_stops_every_rank_with_its_message(tmp_path):
    processes, out = launch(tmp_path, "nan", nan_task="noise", epochs=2)
    owner = distributed.assign_tasks(distributed.task_costs(toy_suite.make_tasks(0), avil.FitConfig()), 2)["noise"]
    errors = [r["error"] for r in results(processes, out)]
    assert "Task 'noise': the training loss became nan" in errors[owner]
    assert f"rank {owner} of 2 failed in the task passes of epoch 1: TrainingError: Task 'noise'" in errors[1 - owner]
    assert errors[1 - owner].endswith(distributed.RESUME)
