"""The fused delta merge (avil.ops, csrc/): the extension against the
pure-PyTorch reference, opcheck, gradients, input checks, the CUDA source
compiling, and αVIL runs agreeing with and without the extension."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avil import ops

ROOT = Path(__file__).resolve().parents[1]
EXT = ops.backend().startswith("extension")
needs_ext = pytest.mark.skipif(not EXT, reason="avil._C not built (or AVIL_DISABLE_EXT=1): reference only")
DEVICES = ["cpu"] + (["cuda"] if EXT and torch.cuda.is_available() and ops.backend() == "extension-cuda" else [])
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# Relative tolerance of extension vs reference per delta dtype. Half types
# convert to float32 exactly, so against float64 truth every dtype is held to
# 1e-6; against the reference (which may take reduced-precision paths on
# CUDA) the half types get their own precision.
OTHER = "cuda" if torch.cuda.is_available() else "meta"
RTOL = {torch.float32: 1e-6, torch.bfloat16: 1e-3, torch.float16: 1e-3}


def inputs(K=5, N=1000, dtype=torch.float32, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(N, generator=gen)
    deltas = (torch.randn(K, N, generator=gen) * 1e-2).to(dtype)
    alphas = torch.randn(K, generator=gen)
    return theta.to(device), deltas.to(device), alphas.to(device)


def close(actual, expected, rtol):
    """max |actual - expected| ≤ rtol · max |expected|: a relative error that
    means something even where an element of expected is near zero."""
    scale = expected.abs().max().clamp_min(1e-30)
    err = (actual - expected).abs().max() / scale
    assert err <= rtol, f"relative error {err:.3g} > {rtol:g}"


def float64_reference(theta, deltas, alphas):
    return (theta.double() + deltas.double().t() @ alphas.double())


def test_backend_names_the_path():
    assert ops.backend() in ("extension-cpu", "extension-cuda", "reference")
    if os.environ.get("AVIL_DISABLE_EXT") == "1":
        assert ops.backend() == "reference"


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
# N: below one vector, odd tail, more than one parallel chunk of 65536.
@pytest.mark.parametrize("K,N", [(1, 3), (3, 1001), (8, 200_003)])
def test_extension_matches_reference(device, dtype, K, N):
    theta, deltas, alphas = inputs(K, N, dtype, device)
    exact = float64_reference(theta, deltas, alphas)
    out = ops.merge(theta, deltas, alphas)
    assert out.dtype == torch.float32 and out.shape == (N,)
    close(out.double(), exact, RTOL[torch.float32])  # half deltas convert exactly
    close(out, ops.reference_merge(theta, deltas, alphas), RTOL[dtype])

    inplace = theta.clone()
    assert ops.merge_(inplace, deltas, alphas) is None
    torch.testing.assert_close(inplace, out, rtol=0, atol=0)

    g = torch.randn(N, generator=torch.Generator().manual_seed(1)).to(device)
    d = ops.dots(deltas, g)
    # A dot product's float32 rounding grows with Σ|δ g|, not with |result|.
    scale = (deltas.double().abs() @ g.double().abs()).max()
    assert (d.double() - deltas.double() @ g.double()).abs().max() <= 1e-6 * scale
    assert (d - ops.reference_dots(deltas, g)).abs().max() <= max(RTOL[dtype], 1e-6) * scale


@needs_ext
def test_merge_reads_alphas_each_call_and_does_not_touch_inputs():
    theta, deltas, alphas = inputs()
    before = theta.clone(), deltas.clone(), alphas.clone()
    first = ops.merge(theta, deltas, alphas)
    second = ops.merge(theta, deltas, alphas * 2)
    for t, b in zip((theta, deltas, alphas), before):
        assert torch.equal(t, b)
    close(first, ops.reference_merge(theta, deltas, alphas), 1e-6)
    close(second, ops.reference_merge(theta, deltas, alphas * 2), 1e-6)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck(device, dtype):
    theta, deltas, alphas = inputs(3, 257, dtype, device)
    g = torch.randn(257, device=device)
    torch.library.opcheck(torch.ops.avil.merge.default, (theta, deltas, alphas))
    torch.library.opcheck(torch.ops.avil.merge_.default, (theta.clone(), deltas, alphas))
    torch.library.opcheck(torch.ops.avil.dots.default, (deltas, g))
    # With gradients flowing: checks the autograd registration too.
    theta_g, alphas_g = theta.clone().requires_grad_(), alphas.clone().requires_grad_()
    torch.library.opcheck(torch.ops.avil.merge.default, (theta_g, deltas, alphas_g))
    if dtype == torch.float32:
        torch.library.opcheck(torch.ops.avil.dots.default,
                              (deltas.clone().requires_grad_(), g.clone().requires_grad_()))


def test_reference_gradcheck_float64():
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(7, generator=gen, dtype=torch.float64, requires_grad=True)
    deltas = torch.randn(3, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    alphas = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(7, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ops.reference_merge, (theta, deltas, alphas))
    assert torch.autograd.gradcheck(ops.reference_dots, (deltas, g))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_match_reference(dtype):
    """The registered backward (d merge/d α = dots(Δ, grad), …) against autograd
    through the reference, on whichever path is active."""
    theta, deltas, alphas = inputs(4, 300, dtype)
    weight = torch.randn(300)  # a non-uniform upstream gradient

    def grads(fn):
        t, a = theta.clone().requires_grad_(), alphas.clone().requires_grad_()
        d = deltas.clone().requires_grad_()
        (fn(t, d, a) * weight).sum().backward()
        return t.grad, d.grad, a.grad

    for got, want in zip(grads(ops.merge), grads(ops.reference_merge)):
        close(got.float(), want.float(), RTOL[dtype])
    # .sum() hands backward an expanded (non-contiguous) gradient.
    a = alphas.clone().requires_grad_()
    ops.merge(theta, deltas, a).sum().backward()
    close(a.grad, deltas.float().sum(1), 1e-5)


@needs_ext
@pytest.mark.filterwarnings("ignore:Input #.* is not a double precision")
def test_extension_gradcheck_float32():
    """gradcheck of the op itself: float32 only, but merge is linear, so central
    differences are exact up to float32 rounding."""
    theta, deltas, alphas = inputs(3, 11)
    args = (theta.requires_grad_(), deltas.requires_grad_(), alphas.requires_grad_())
    assert torch.autograd.gradcheck(ops.merge, args, eps=1e-2, atol=1e-3, rtol=1e-3)
    g = torch.randn(11, requires_grad=True)
    assert torch.autograd.gradcheck(ops.dots, (deltas, g), eps=1e-2, atol=1e-3, rtol=1e-3)


def bad_inputs():
    theta, deltas, alphas = inputs(3, 10)
    return [
        ("N", (theta[:9].contiguous(), deltas, alphas), "theta has 9 elements but deltas has N = 10"),
        ("K", (theta, deltas, alphas[:2].contiguous()), "alphas has 2 elements but deltas has K = 3"),
        ("deltas dtype", (theta, deltas.double(), alphas), "deltas must be float32, bfloat16 or float16"),
        ("theta dtype", (theta.half(), deltas, alphas), "theta must be float32"),
        ("alphas dtype", (theta, deltas, alphas.double()), "alphas must be float32"),
        # Without a GPU, a meta tensor is the other device (caught by the fake kernel).
        ("device", (theta.to(OTHER), deltas, alphas), f"theta is on {OTHER}\\S* but deltas is on cpu"),
        ("theta strided", (torch.randn(20)[::2], deltas, alphas), "theta must be contiguous"),
        ("deltas strided", (theta, torch.randn(10, 3).t(), alphas), "deltas must be contiguous"),
        ("empty K", (theta, deltas[:0], alphas[:0]), "deltas is empty (K = 0)"),
        ("deltas 1-D", (theta, deltas[0], alphas), "deltas must be (K, N)"),
    ]


@pytest.mark.parametrize("case", bad_inputs(), ids=lambda c: c[0])
@pytest.mark.parametrize("fn", ["merge", "merge_"])
def test_bad_inputs_raise(fn, case):
    _, args, message = case
    with pytest.raises(RuntimeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        getattr(ops, fn)(*args)


def test_dots_bad_inputs_raise():
    _, deltas, _ = inputs(3, 10)
    with pytest.raises(RuntimeError, match="g has 9 elements but deltas has N = 10"):
        ops.dots(deltas, torch.randn(9))
    with pytest.raises(RuntimeError, match="g must be float32"):
        ops.dots(deltas, torch.randn(10, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="g must be contiguous"):
        ops.dots(deltas, torch.randn(20)[::2])


@pytest.fixture(params=["active", "reference"])
def backend(request, monkeypatch):
    """Each test below on the active backend and on the pure-PyTorch reference
    (the functions choose the backend at call time)."""
    if request.param == "reference":
        monkeypatch.setattr(ops, "_EXT", False)
    return request.param


def test_merge__bumps_the_version_counter_like_an_inplace_op(backend):
    """Autograd must refuse a tensor it saved before merge_ changed it
    (issue 12: the extension once gave exp(a) + 1 here, silently)."""
    _, deltas, alphas = inputs(2, 5)
    x = torch.randn(5, requires_grad=True)
    theta = torch.zeros(5)
    y = (x * theta).sum()  # saves theta for x's gradient
    before = theta._version
    ops.merge_(theta, deltas, alphas)
    assert theta._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_merge__refuses_inputs_that_require_grad(backend):
    """merge_ has no derivative: with gradients on it refuses, on both backends
    with the same message, rather than differentiate wrongly."""
    _, deltas, alphas = inputs(2, 5)
    a = torch.randn(5, requires_grad=True)
    with pytest.raises(RuntimeError, match="no derivative.*Fix: use avil.ops.merge"):
        t = a.exp()
        ops.merge_(t, deltas, alphas)
        t.sum().backward()
    with pytest.raises(RuntimeError, match="no derivative"):
        ops.merge_(torch.zeros(5), deltas, alphas.clone().requires_grad_())
    leaf = torch.zeros(5, requires_grad=True)
    with torch.no_grad():  # how αVIL calls it on the live parameters
        ops.merge_(leaf, deltas, alphas)
    torch.testing.assert_close(leaf.detach(), ops.reference_merge(torch.zeros(5), deltas, alphas))


def test_ops_run_under_torch_compile(backend):
    """A function calling all three ops compiles into one graph (fullgraph:
    no graph break) and computes what eager mode does. backend="aot_eager"
    traces with fake tensors (the extension's fake kernels), functionalises
    merge_ and runs AOTAutograd, which is what torch.compile needs of a custom
    op; inductor would add only its own C++ code generation (tens of seconds
    on a 2-core CPU), nothing that exercises the ops further."""
    theta, deltas, alphas = inputs(3, 64)
    g = torch.randn(64)

    def step(theta, deltas, alphas, g):
        merged = ops.merge(theta, deltas, alphas)  # (N,)
        grad_alpha = ops.dots(deltas, g * merged)  # (K,)
        out = theta.clone()
        ops.merge_(out, deltas, -grad_alpha)
        return out, grad_alpha

    torch._dynamo.reset()
    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    for want, got in zip(step(theta, deltas, alphas, g), compiled(theta, deltas, alphas, g)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # α with gradients: the registered autograd of merge under AOTAutograd.
    a = alphas.clone().requires_grad_()
    loss = torch.compile(lambda a: ops.merge(theta, deltas, a).square().sum(), backend="aot_eager",
                         fullgraph=True)(a)
    loss.backward()
    want = 2 * deltas @ ops.reference_merge(theta, deltas, alphas)
    torch.testing.assert_close(a.grad, want, rtol=1e-5, atol=1e-5)


def nvcc():
    return shutil.which("nvcc") or next(
        (str(p) for p in [Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc"] if p.exists()), None)


@pytest.mark.skipif(nvcc() is None, reason="nvcc not found (PATH or CUDA_HOME): cannot compile-check csrc/cuda/merge.cu")
def test_cuda_source_compiles(tmp_path):
    """Compile only: on a CPU-only machine the CUDA kernels are never built by
    setup.py, so this is what keeps them from rotting."""
    from torch.utils.cpp_extension import include_paths

    cmd = [nvcc(), "-c", str(ROOT / "csrc" / "cuda" / "merge.cu"), "-o", str(tmp_path / "merge.o"),
           "-std=c++20", "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC",
           f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
           # A CPU wheel ships c10/cuda headers but not their generated config
           # header, which only sets DLL-export macros unused on Linux.
           "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE"]
    cmd += [f"-I{p}" for p in include_paths()]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "merge.o").stat().st_size > 0


FIT_SCRIPT = """
import json, sys, torch, avil
from avil.tasks import toy
torch.set_num_threads(1)
h = avil.fit(toy.make_encoder(0), toy.make_tasks(0), target=toy.TARGET, method="avil",
             config=avil.FitConfig(epochs=2, seed=0, progress=False, alpha_solver="adam"))
print(json.dumps({"backend": avil.ops.backend(), "dev": h.dev, "test": h.test,
                  "alphas": h.alphas, "task_weights": h.task_weights, "train_loss": h.train_loss}))
"""


@needs_ext
def test_avil_fit_same_with_and_without_extension():
    """A short αVIL run on the toy suite, once on the extension and once with
    AVIL_DISABLE_EXT=1: the History numbers agree to 1e-5. The α-step takes
    Adam steps here: they are continuous in the merge's float rounding, while
    L-BFGS-B's line search branches on it (its α differed by 6e-4)."""
    runs = {}
    for disable in ("0", "1"):
        env = {**os.environ, "AVIL_DISABLE_EXT": disable}
        proc = subprocess.run([sys.executable, "-c", FIT_SCRIPT], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        runs[disable] = json.loads(proc.stdout.strip().splitlines()[-1])
    ext, ref = runs["0"], runs["1"]
    assert ext.pop("backend").startswith("extension") and ref.pop("backend") == "reference"
    assert ext["alphas"] and ext["dev"]

    def flat(x):
        if isinstance(x, dict):
            return [v for k in sorted(x) for v in flat(x[k])]
        if isinstance(x, list):
            return [v for item in x for v in flat(item)]
        return [float(x)]

    for key in ext:
        a, b = flat(ext[key]), flat(ref[key])
        assert len(a) == len(b), key
        for u, v in zip(a, b):
            assert abs(u - v) <= 1e-5 * max(1.0, abs(v)), f"{key}: {u} vs {v}"
