"""An αVIL epoch under bf16 autocast against float32, side by side.

    python benchmarks/amp.py [--device cpu|cuda] [--repeats R] [--suites text multimnist]

Two runners per suite, built as ``avil.fit`` builds them (``avil.trainer.build``)
on the same tasks, one with ``FitConfig(bf16=True)`` and one without, train
epoch after epoch in alternation (float32, bf16, float32, ...) after one
warm-up epoch each, so both see the same machine load; the figure is the ratio
of their median epoch times (bf16 / float32; below 1: bf16 is faster).
Evaluation is not timed; the α-step runs in float32 under both.

Suites:
  text        the text suite of notebook 02: MiniLM's top transformer layer on
              cached lower-layer states, 4 tasks of 500 snippets (matrix products
              that bf16 hardware speeds up)
  multimnist  notebook 01's basic suite: LeNet on 6,000 images, 2 tasks (small
              convolutions)

Writes benchmarks/results/amp-<device>.json and prints a table.
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
from avil.tasks import multimnist, nlu
from avil.trainer import build

HERE = Path(__file__).resolve().parent


def suites(device):
    """name -> (make_encoder, tasks, target, config) at the benchmark's sizes."""
    text = nlu.TextSuite(trainable_layers=1, pooling="cls", max_length=64, n_train=500, n_dev=256, n_test=32,
                         n_aux_eval=32)
    return {
        "text": (lambda: text(0)[0], text.suite(0), "sentiment",
                 avil.FitConfig(batch_size=32, lr=1e-4, eval_batch_size=64, device=device, progress=False)),
        "multimnist": (multimnist.make_encoder,
                       multimnist.make_tasks("left", "basic", n_train=6000, n_dev=256, n_test=256), "left",
                       avil.FitConfig(batch_size=128, lr=0.05, optimizer="sgd", device=device, progress=False)),
    }


def runner(make_encoder, tasks, target, config):
    torch.manual_seed(0)
    tasks = [dataclasses.replace(t, head=copy.deepcopy(t.head)) for t in tasks]
    return build(make_encoder(), tasks, target, "avil", config).runner


def epoch_seconds(run, epoch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run.train_epoch(epoch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--suites", nargs="*", default=["text", "multimnist"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: as the notebooks' workers)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    figures = {}
    for name, (make_encoder, tasks, target, config) in suites(args.device).items():
        if name not in args.suites:
            continue
        runs = {"float32": runner(make_encoder, tasks, target, config),
                "bf16": runner(make_encoder, tasks, target, dataclasses.replace(config, bf16=True))}
        times = {label: [] for label in runs}
        for epoch in range(args.repeats + 1):  # epoch 0 warms up
            for label, run in runs.items():
                seconds = epoch_seconds(run, epoch, device)
                if epoch:
                    times[label].append(seconds)
        medians = {label: statistics.median(ts) for label, ts in times.items()}
        figures[name] = {"float32_epoch_s": medians["float32"], "bf16_epoch_s": medians["bf16"],
                         "ratio_bf16_over_float32": medians["bf16"] / medians["float32"], "epochs": times}
        print(f"{name:<11} float32 {medians['float32']:.2f} s   bf16 {medians['bf16']:.2f} s   "
              f"bf16 / float32 {medians['bf16'] / medians['float32']:.2f}", flush=True)
    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
            or platform.machine(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "repeats": args.repeats,
            "statistic": "median over repeats, after 1 warm-up, float32 and bf16 epochs alternating",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = HERE / "results" / f"amp-{device.type}.json"
    out.write_text(json.dumps({"meta": meta, "figures": figures}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
