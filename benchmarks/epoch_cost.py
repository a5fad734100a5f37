"""What an αVIL epoch costs next to a `uniform` epoch on MultiMNIST, and how
much of it is αVIL's own machinery (δ extraction, α-steps, merge).

    python benchmarks/epoch_cost.py [--device cpu|cuda] [--n-train N] [--repeats R]

One `uniform` runner and one `avil` runner are built on the same MultiMNIST
tasks (target `left`, basic suite: `left` + `right`) and trained epoch after
epoch, alternating (uniform, avil, uniform, avil, ...) after one warm-up epoch
each, so both see the same machine load; medians over R epochs are reported.
Both epochs take the same number of optimizer steps (Σ_t ⌈|D_t| / batch⌉):
`uniform` interleaves the tasks' batches with one optimizer, αVIL runs one
pass per task (ρ = 1) with per-task optimizers. Evaluation is not timed.

Inside αVIL's epoch (``AlphaVIL.train_epoch``) the pieces are timed by wrapping
``task_passes`` and ``tune_alphas``:

  task passes   the per-task training passes (the work `uniform` also does),
                less δ extraction
  δ extraction  δ_t = θ_t − θ0 (K subtractions into Δ, inside task_passes;
                timed separately on the same buffers, median of 50)
  α-step        ``tune_alphas``: the solver's evaluations, each a merge
                θ0 + Σ α δ, a forward and backward pass over the α-step's dev
                subset (alpha_dev_size examples) and Δ·g
  merge & rest  the rest of the epoch: θ0 copy, final merge, weight update

machinery = epoch − task passes = δ extraction + α-steps + merge & rest.
Writes benchmarks/results/epoch_cost-<device>.json and prints a table.
"""
import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import avil
from avil import ops
from avil.trainer import build
from avil.tasks import multimnist

HERE = Path(__file__).resolve().parent


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_runner(method, tasks, config):
    """What ``avil.fit`` builds before its epoch loop (``avil.trainer.build``): the
    method runner, with an encoder and heads of its own."""
    torch.manual_seed(config.seed)
    tasks = [dataclasses.replace(t, head=copy.deepcopy(t.head)) for t in tasks]
    return build(multimnist.make_encoder(), tasks, "left", method, config).runner


def timed(device, fn, sink):
    """Wrap ``fn`` so every call appends its wall time to ``sink``."""
    def wrapper(*args, **kwargs):
        sync(device)
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sync(device)
        sink.append(time.perf_counter() - t0)
        return out
    return wrapper


def delta_extraction_seconds(runner, device, repeats=50):
    """Median time of the K subtractions δ_t = θ_t − θ0 on the runner's own buffers
    (the live buffer is only read; Δ is scratch between epochs)."""
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for k in range(len(runner.names)):
            torch.sub(runner.flat.data, runner.theta0, out=runner.deltas[k])
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-train", type=int, default=12_000, help="MultiMNIST training examples per task")
    parser.add_argument("--n-dev", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--alpha-dev-size", type=int, default=avil.FitConfig.alpha_dev_size,
                        help="dev examples the α-step sees (FitConfig.alpha_dev_size)")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per method (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1, as notebooks/01_multimnist.ipynb; 0 keeps torch's default)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/epoch_cost-<device>.json)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    tasks = multimnist.make_tasks("left", "basic", n_train=args.n_train, n_dev=args.n_dev, n_test=100, seed=0)
    config = avil.FitConfig(batch_size=args.batch_size, optimizer="sgd", lr=0.05, seed=0, device=args.device, progress=False,
                            alpha_dev_size=args.alpha_dev_size).validate()
    uniform = make_runner("uniform", tasks, config)
    alpha = make_runner("avil", tasks, config)
    pieces = {"task_passes": [], "tune_alphas": []}
    evaluations = []
    tune_alphas = alpha.tune_alphas

    def counted_tune_alphas(epoch):
        alphas, step = tune_alphas(epoch)
        evaluations.append(step.evaluations)
        return alphas, step

    alpha.tune_alphas = counted_tune_alphas
    alpha.task_passes = timed(device, alpha.task_passes, pieces["task_passes"])
    alpha.tune_alphas = timed(device, alpha.tune_alphas, pieces["tune_alphas"])

    epochs = {"uniform": [], "avil": []}
    for epoch in range(args.repeats + 1):  # epoch 0: warm-up, not counted
        for name, runner in (("uniform", uniform), ("avil", alpha)):
            sync(device)
            t0 = time.perf_counter()
            runner.train_epoch(epoch)
            sync(device)
            epochs[name].append(time.perf_counter() - t0)
            print(f"epoch {epoch} {name:<8} {epochs[name][-1]:7.2f} s", flush=True)
    for values in (*epochs.values(), *pieces.values()):
        del values[0]

    med = statistics.median
    delta_s = delta_extraction_seconds(alpha, device)
    # Per-epoch machinery (epoch − task passes), medians of the per-epoch values.
    machinery = [e - p for e, p in zip(epochs["avil"], pieces["task_passes"])]
    rest = [m - a for m, a in zip(machinery, pieces["tune_alphas"])]
    figures = {
        "uniform_epoch_s": med(epochs["uniform"]),
        "avil_epoch_s": med(epochs["avil"]),
        "ratio_avil_over_uniform": med(epochs["avil"]) / med(epochs["uniform"]),
        "avil_task_passes_s": med(pieces["task_passes"]) - delta_s,
        "avil_delta_extraction_s": delta_s,
        "avil_alpha_steps_s": med(pieces["tune_alphas"]),
        "avil_merge_and_rest_s": med(rest),
        "avil_machinery_s": med(machinery) + delta_s,
    }
    figures["machinery_share"] = figures["avil_machinery_s"] / figures["avil_epoch_s"]
    figures["alpha_steps_share"] = figures["avil_alpha_steps_s"] / figures["avil_epoch_s"]
    n_params = alpha.flat.numel
    steps = sum(-(-len(t.train) // args.batch_size) for t in tasks)
    result = {
        "meta": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU ({platform.processor() or platform.machine()})",
            "torch": torch.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "merge_backend": ops.backend(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        "settings": {
            "tasks": [t.name for t in tasks], "target": "left", "n_train_per_task": args.n_train,
            "n_dev": args.n_dev, "batch_size": args.batch_size, "optimizer_steps_per_epoch": steps,
            "alpha_solver": config.alpha_solver, "alpha_dev_size": config.alpha_dev_size,
            "alpha_step_evaluations": evaluations[1:],
            "parameters": n_params, "repeats": args.repeats, "statistic": "median over repeats, after 1 warm-up",
        },
        "figures": figures,
        "raw_seconds": {**{f"{k}_epoch": v for k, v in epochs.items()}, **{f"avil_{k}": v for k, v in pieces.items()}},
    }

    print(f"\nMultiMNIST, {len(tasks)} tasks × {args.n_train} examples, batch {args.batch_size}, "
          f"{steps} steps/epoch, α-step: {config.alpha_solver} on {config.alpha_dev_size} dev examples, "
          f"{statistics.fmean(evaluations[1:]):.1f} evaluations/epoch, {torch.get_num_threads()} threads, "
          f"medians of {args.repeats}")
    rows = [("uniform epoch", figures["uniform_epoch_s"]), ("avil epoch", figures["avil_epoch_s"]),
            ("  task passes", figures["avil_task_passes_s"]),
            ("  δ extraction", figures["avil_delta_extraction_s"]),
            ("  α-step", figures["avil_alpha_steps_s"]), ("  merge & rest", figures["avil_merge_and_rest_s"]),
            ("  machinery", figures["avil_machinery_s"])]
    for label, s in rows:
        share = f"{100 * s / figures['avil_epoch_s']:6.1f} % of avil" if label.startswith("  ") else ""
        print(f"{label:<16} {1000 * s:10.2f} ms  {share}")
    print(f"ratio avil / uniform: {figures['ratio_avil_over_uniform']:.3f}; "
          f"machinery share: {100 * figures['machinery_share']:.1f} %; "
          f"α-step share: {100 * figures['alpha_steps_share']:.1f} %")

    out = Path(args.out) if args.out else HERE / "results" / f"epoch_cost-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
