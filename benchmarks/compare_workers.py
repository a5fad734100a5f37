"""What `reproduce.compare(workers=2)` saves over `workers=1` on 01's basic
MultiMNIST setting, and that both give the same histories.

    python benchmarks/compare_workers.py [--n-train N] [--epochs E] [--seeds S]

The same runs (notebook 01's methods, seeds 0..S−1, 01's config at a smaller
size) are made twice, side by side in one process tree: once with one worker
(in this process), once with two forked workers, alternating for --rounds rounds. Every run uses one torch
thread in both modes, as 01 does (THREADS = 1), so the ratio measures running
two runs at once on two cores, not a change of intra-op threads.
Writes benchmarks/results/compare_workers-cpu.json and prints the figures.
"""
import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import avil
from avil import reproduce
from avil.tasks import multimnist

HERE = Path(__file__).resolve().parent
METHODS = ["single_task", "uniform", "gcs", "diw", "avil"]  # notebook 01's


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=3000, help="training images per task (01 default: 12,000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (01 default: 8)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per method (01 default: 3)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both modes (medians reported)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sizes = {"n_train": args.n_train, "n_dev": 1000, "n_test": 2000}
    config = avil.FitConfig(epochs=args.epochs, batch_size=128, optimizer="sgd", lr=0.05, progress=False)

    make_run = multimnist.run_factory("left", "basic", data_seed=0, **sizes)  # as notebook 01

    seeds = list(range(args.seeds))
    rounds, results = {1: [], 2: []}, {}
    # Alternating rounds, so that both modes see the same machine load and neither gets the warm-up.
    for _ in range(args.rounds):
        for workers in (1, 2):
            start = time.perf_counter()
            results[workers] = reproduce.compare(make_run, "left", METHODS, seeds, config, progress=False,
                                                 workers=workers)
            rounds[workers].append(time.perf_counter() - start)
            print(f"workers={workers}: {len(METHODS) * len(seeds)} runs in {rounds[workers][-1]:.1f} s", flush=True)
    seconds = {w: statistics.median(r) for w, r in rounds.items()}

    # History's == leaves out its timings: the rest must match to the bit.
    identical = results[1] == results[2]
    out = {
        "setting": {"methods": METHODS, "seeds": seeds, "epochs": args.epochs, **sizes, "torch_threads": 1},
        "seconds_median": {f"workers={w}": round(s, 2) for w, s in seconds.items()},
        "seconds_per_round": {f"workers={w}": [round(s, 2) for s in r] for w, r in rounds.items()},
        "speed_up": round(seconds[1] / seconds[2], 3),
        "histories_identical": identical,
        "device": f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    print(f"speed-up workers=2 over workers=1: {out['speed_up']:.2f}x; histories identical: {identical}")
    path = HERE / "results" / "compare_workers-cpu.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
