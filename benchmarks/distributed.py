"""Task-parallel αVIL: the epoch time on P = 1 and P = 2 processes, side by side.

    python benchmarks/distributed.py [--epochs E] [--rounds R]

The suite is MultiMNIST extended with the sizes of notebooks/01_multimnist.ipynb's
default profile (K = 5 tasks: target `left` with a scarce 1,000 training
images, four auxiliaries of 12,000; dev 2,000; batch 128, SGD lr 0.02), LeNet,
one torch thread per process. Three setups run one after the other, R rounds
(so each sees the machine's load of the moment about equally):

  P = 1          one process, no process group: the plain ``avil.fit`` path
  P = 2 split    ``torchrun --nproc-per-node 2``, dev gradient split over the ranks
  P = 2 once     the same, dev gradient on rank 0, broadcast (avil/distributed/)

Each process builds exactly what ``avil.fit`` builds (``trainer.build``) and
times ``runner.train_epoch`` for a warm-up epoch and E more (evaluation,
which runs on rank 0 alone, is not timed). Per rank and epoch it splits the
time into phases by wrapping the runner's methods and every collective
(``Group.collective``):

  task passes   ``task_passes``: this rank's passes, then gathering every
                task's loss (that collective also waits for the slower rank)
                and exchanging Δ's columns for the merge (one all-to-all)
  α-step        ``tune_alphas``: the solver's evaluations (merge all-gather,
                dev pass, gradient all-reduce or broadcast, Δ·g gather)
  rest          the final merge, the weight update, the cross-rank check
and, inside each, the seconds spent in collectives ("communication", waits
included). The speed-up is the median P = 1 epoch over the median P = 2 one.
Each epoch also records its process's CPU seconds: CPU / wall time is the
share of a core the process got, which says how much other programs on the
machine slowed it down. ``cpu_ratio``: the P = 1 epoch's CPU seconds over
those of the busiest P = 2 rank, the speed-up each process would approach
with a core of its own (an estimate from CPU times, not a wall-time
measurement: it leaves out the waits at the collectives).
Also recorded: the rows and bytes of Δ each rank holds, its tasks and their
batches, the machine's load average around each run (other programs share
this machine's cores). Writes benchmarks/results/distributed-<device>.json.
"""
import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITE = {"target": "left", "suite": "extended", "n_train": 12_000, "n_dev": 2_000, "n_test": 10_000,
         "n_target_train": 1000, "seed": 0}
SETUPS = [(1, None), (2, "split"), (2, "once")]


def worker(spec: dict) -> None:
    """One process of one setup: build, time the epochs, write this rank's JSON."""
    import torch

    import avil
    from avil import distributed, trainer
    from avil.tasks import multimnist

    torch.set_num_threads(1)
    device = "cpu"
    if spec["world_size"] > 1:
        device = distributed.init(dev_gradient=spec["dev_gradient"])
    tasks = multimnist.make_tasks(head_seed=0, **SUITE)
    torch.manual_seed(0)
    config = avil.FitConfig(batch_size=128, optimizer="sgd", lr=spec["lr"], progress=False, device=device)
    setup = trainer.build(multimnist.make_encoder(), tasks, SUITE["target"], "avil", config)
    runner, group = setup.runner, setup.parallel
    phase = {"now": "rest"}
    seconds, communication = defaultdict(float), defaultdict(float)

    def timed_phase(name, fn):
        def wrapper(*args):
            phase["now"] = name
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                seconds[name] += time.perf_counter() - start
                phase["now"] = "rest"
        return wrapper

    runner.task_passes = timed_phase("task passes", runner.task_passes)
    runner.tune_alphas = timed_phase("α-step", runner.tune_alphas)
    if isinstance(group, distributed.Group):
        collective = group.collective

        def timed_collective(what, op, *args):
            start = time.perf_counter()
            try:
                return collective(what, op, *args)
            finally:
                communication[phase["now"]] += time.perf_counter() - start

        group.collective = timed_collective
    epochs = []
    for epoch in range(spec["epochs"] + 1):
        seconds.clear()
        communication.clear()
        start, cpu = time.perf_counter(), time.process_time()
        result = runner.train_epoch(epoch)
        total = time.perf_counter() - start
        seconds["rest"] = total - seconds["task passes"] - seconds["α-step"]
        epochs.append({"seconds": total, "cpu_seconds": time.process_time() - cpu, "warm_up": epoch == 0,
                       "evaluations": result.alpha_step["evaluations"],
                       "phases": {name: {"seconds": seconds[name], "communication": communication[name]}
                                  for name in ("task passes", "α-step", "rest")}})
    costs = distributed.task_costs(tasks, config)
    report = {"rank": group.rank, "tasks": runner.own, "batches": sum(costs[name] for name in runner.own),
              "delta_rows": runner.deltas.shape[0],
              "delta_bytes": runner.deltas.numel() * runner.deltas.element_size(),
              "N": setup.flat.numel, "K": len(tasks), "epochs": epochs}
    Path(f"{spec['out']}.{group.rank}.json").write_text(json.dumps(report))


def launch(spec: dict, out: Path) -> list:
    """Run one setup to completion; every rank's report."""
    spec = dict(spec, out=str(out))
    me = [str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
    if spec["world_size"] == 1:
        command = [sys.executable] + me
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={spec['world_size']}",
                   f"--master-port={port}"] + me
    subprocess.run(command, env=env, check=True)
    return [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(spec["world_size"])]


def summarize(runs: list) -> dict:
    """Median epoch (over rounds and timed epochs) and median phases per setup;
    speed-ups over P = 1."""
    summary = {}
    for world_size, dev_gradient in SETUPS:
        label = f"P={world_size}" + (f" {dev_gradient}" if dev_gradient else "")
        mine = [r for r in runs if (r["world_size"], r["dev_gradient"]) == (world_size, dev_gradient)]
        # An epoch lasts as long as its slowest rank (they meet at every collective).
        epochs = [max(rank["epochs"][e]["seconds"] for rank in run["ranks"])
                  for run in mine for e in range(1, len(run["ranks"][0]["epochs"]))]
        phases = {}
        for rank in range(world_size):
            timed = [e for run in mine for e in run["ranks"][rank]["epochs"] if not e["warm_up"]]
            phases[f"rank {rank}"] = {
                name: {kind: statistics.median(e["phases"][name][kind] for e in timed)
                       for kind in ("seconds", "communication")}
                for name in ("task passes", "α-step", "rest")}
            phases[f"rank {rank}"]["α-step evaluations"] = statistics.median(e["evaluations"] for e in timed)
            phases[f"rank {rank}"]["cpu_seconds"] = statistics.median(e["cpu_seconds"] for e in timed)
            phases[f"rank {rank}"]["core_share"] = statistics.median(e["cpu_seconds"] / e["seconds"] for e in timed)
        first = mine[0]["ranks"]
        summary[label] = {
            "epoch_seconds_median": statistics.median(epochs), "epoch_seconds": epochs, "phases_median": phases,
            "delta_rows_per_rank": [r["delta_rows"] for r in first],
            "delta_bytes_per_rank": [r["delta_bytes"] for r in first],
            "tasks_per_rank": [r["tasks"] for r in first], "batches_per_rank": [r["batches"] for r in first]}
    base = summary["P=1"]
    for label, s in summary.items():
        s["speed_up"] = base["epoch_seconds_median"] / s["epoch_seconds_median"]
        busiest = max(p["cpu_seconds"] for p in s["phases_median"].values())
        s["cpu_seconds_busiest_rank"] = busiest
        s["cpu_ratio"] = base["phases_median"]["rank 0"]["cpu_seconds"] / busiest
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per run, after one warm-up epoch")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three setups")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))

    import torch

    import avil

    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for world_size, dev_gradient in SETUPS:
                spec = {"world_size": world_size, "dev_gradient": dev_gradient, "epochs": args.epochs, "lr": args.lr}
                load_before = os.getloadavg()
                ranks = launch(spec, Path(scratch) / f"r{round_}-p{world_size}-{dev_gradient}")
                runs.append(dict(spec, round=round_, ranks=ranks, load_average_before=load_before,
                                 load_average_after=os.getloadavg()))
                print(f"round {round_}, P = {world_size} {dev_gradient or ''}: epochs "
                      f"{[round(max(r['epochs'][e]['seconds'] for r in ranks), 2) for e in range(args.epochs + 1)]}"
                      f" s (first: warm-up), load average {load_before[0]:.2f} → {os.getloadavg()[0]:.2f}", flush=True)
    summary = summarize(runs)
    result = {
        "benchmark": "benchmarks/distributed.py", "device": "cpu", "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "threads_per_rank": 1, "torch": torch.__version__, "avil": avil.__version__,
        "python": platform.python_version(), "merge_backend": avil.ops.backend(),
        "suite": dict(SUITE, K=runs[0]["ranks"][0]["K"], N=runs[0]["ranks"][0]["N"]),
        "config": {"batch_size": 128, "optimizer": "sgd", "lr": args.lr, "other": "FitConfig defaults"},
        "epochs_timed": args.epochs, "rounds": args.rounds, "summary": summary, "runs": runs,
    }
    path = HERE / "results" / "distributed-cpu.json"
    path.write_text(json.dumps(result, indent=1))
    k = result["suite"]["K"]
    print(f"\nMultiMNIST extended, K = {k}, N = {result['suite']['N']:,}, one torch thread per process")
    print(f"{'setup':<12} {'epoch s':>8} {'speed-up':>9} {'CPU ratio':>9} {'Δ rows/rank':>12} {'Δ MB/rank':>10}   "
          "per-rank median phases, s (communication and waits inside)")
    for label, s in summary.items():
        phases = "; ".join(
            f"{rank}: " + ", ".join(f"{name} {p[name]['seconds']:.2f} ({p[name]['communication']:.2f})"
                                     for name in ("task passes", "α-step", "rest"))
            + f", {p['α-step evaluations']:.0f} evals, CPU {p['cpu_seconds']:.2f} s = {p['core_share']:.2f} core"
            for rank, p in s["phases_median"].items())
        print(f"{label:<12} {s['epoch_seconds_median']:>8.2f} {s['speed_up']:>8.2f}× {s['cpu_ratio']:>8.2f}× "
              f"{str(s['delta_rows_per_rank']):>12} "
              f"{str([round(b / 2**20, 2) for b in s['delta_bytes_per_rank']]):>10}   {phases}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
