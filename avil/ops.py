"""The weighted delta merge, θ0 + Σ_k α_k δ_k, and its α-gradient
(docs/design.md §4).

``merge``, ``merge_`` and ``dots`` are defined once and choose the backend
inside: the fused C++/CUDA extension when it is built (``avil._C``, registered
as ``torch.ops.avil.*``), else the pure-PyTorch reference below, which is also
the specification the kernels are tested against. ``AVIL_DISABLE_EXT=1``
forces the reference. Both backends check their inputs with the same
messages, and ``merge_`` behaves like an in-place torch op on both: it bumps
theta's version counter, and refuses inputs that require grad while
gradients are on (it has no derivative; ``merge`` has).

Shapes: theta (N,) float32; deltas (K, N) float32 | bfloat16 | float16;
alphas (K,) float32; g (N,) float32. Math and θ stay float32.
"""
import os

import torch


def reference_merge(theta: torch.Tensor, deltas: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """θ0 + Δᵀα, out of place. (N,) ← (N,), (K, N), (K,)."""
    return torch.addmv(theta, deltas.to(theta.dtype).t(), alphas)


def reference_merge_(theta: torch.Tensor, deltas: torch.Tensor, alphas: torch.Tensor) -> None:
    """θ ← θ + Δᵀα, in place on theta (N,)."""
    torch.addmv(theta, deltas.to(theta.dtype).t(), alphas, out=theta)


def reference_dots(deltas: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Δ·g, the gradient of L(θ0 + Δᵀα) with respect to α given g = ∇_θ L. (K,)."""
    return torch.mv(deltas.to(g.dtype), g)


def _load_extension() -> bool:
    """Load avil._C (which registers torch.ops.avil.*) unless disabled."""
    if os.environ.get("AVIL_DISABLE_EXT", "0") == "1":
        return False
    try:
        from . import _C  # noqa: F401  (imported for its op registrations)
    except ImportError:
        return False
    return True


_EXT = _load_extension()
_DELTA_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# The extension's message (csrc/merge.cpp) for merge_ on an input that requires grad.
_MERGE__GRAD = ("avil::merge_: the in-place merge has no derivative, but an input requires grad. "
                "Fix: use avil.ops.merge (out of place, differentiable), or call merge_ under torch.no_grad()")


def backend() -> str:
    """Which implementation the functions below use: "extension-cpu" (the C++
    kernels only), "extension-cuda" (C++ and CUDA kernels) or "reference"
    (pure PyTorch: the extension is not built or AVIL_DISABLE_EXT=1)."""
    if not _EXT:
        return "reference"
    return "extension-cuda" if torch._C._dispatch_has_kernel_for_dispatch_key("avil::merge", "CUDA") else "extension-cpu"


def _check(op: str, deltas: torch.Tensor, **vectors: tuple[torch.Tensor, int]) -> None:
    """The extension's input checks (same messages), for the reference path and
    the fake kernels."""
    if deltas.dim() != 2:
        raise RuntimeError(f"{op}: deltas must be (K, N), got shape {list(deltas.shape)}")
    if deltas.shape[0] == 0:
        raise RuntimeError(f"{op}: deltas is empty (K = 0): there is nothing to merge")
    if deltas.dtype not in _DELTA_DTYPES:
        raise RuntimeError(f"{op}: deltas must be float32, bfloat16 or float16, got {deltas.dtype}")
    if not deltas.is_contiguous():
        raise RuntimeError(f"{op}: deltas must be contiguous (one flat row per task)")
    for name, (t, dim) in vectors.items():
        n = deltas.shape[dim]
        if t.dim() != 1:
            raise RuntimeError(f"{op}: {name} must be 1-D, got shape {list(t.shape)}")
        if t.shape[0] != n:
            raise RuntimeError(f"{op}: {name} has {t.shape[0]} elements but deltas has {'KN'[dim]} = {n}")
        if t.dtype != torch.float32:
            raise RuntimeError(f"{op}: {name} must be float32, got {t.dtype}")
        if t.device != deltas.device:
            raise RuntimeError(f"{op}: {name} is on {t.device} but deltas is on {deltas.device}")
        if not t.is_contiguous():
            raise RuntimeError(f"{op}: {name} must be contiguous")


if _EXT:

    # Fake (meta) kernels: shapes for torch.compile, and the same input checks,
    # which also catch a meta tensor mixed with real ones.
    @torch.library.register_fake("avil::merge")
    def _(theta, deltas, alphas):
        _check("avil::merge", deltas, theta=(theta, 1), alphas=(alphas, 0))
        return torch.empty_like(theta)

    @torch.library.register_fake("avil::merge_")
    def _(theta, deltas, alphas):
        _check("avil::merge_", deltas, theta=(theta, 1), alphas=(alphas, 0))

    @torch.library.register_fake("avil::dots")
    def _(deltas, g):
        _check("avil::dots", deltas, g=(g, 1))
        return g.new_empty(deltas.shape[0])

    def _merge_setup(ctx, inputs, output):
        _, deltas, alphas = inputs
        ctx.save_for_backward(deltas, alphas)

    def _merge_backward(ctx, grad):
        # θ0 + Δᵀα is linear: ∂/∂θ0 = I, ∂/∂α = Δ·grad, ∂/∂Δ = α ⊗ grad.
        deltas, alphas = ctx.saved_tensors
        grad = grad.contiguous()  # e.g. the expanded ones of a .sum()
        g_theta = grad if ctx.needs_input_grad[0] else None
        g_deltas = torch.outer(alphas, grad).to(deltas.dtype) if ctx.needs_input_grad[1] else None
        g_alphas = dots(deltas, grad) if ctx.needs_input_grad[2] else None
        return g_theta, g_deltas, g_alphas

    def _dots_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _dots_backward(ctx, grad):
        # Δ·g: ∂/∂Δ = grad ⊗ g, ∂/∂g = Δᵀ grad (a merge onto zeros).
        deltas, g = ctx.saved_tensors
        grad = grad.contiguous()
        g_deltas = torch.outer(grad, g).to(deltas.dtype) if ctx.needs_input_grad[0] else None
        g_g = merge(torch.zeros_like(g), deltas, grad) if ctx.needs_input_grad[1] else None
        return g_deltas, g_g

    torch.library.register_autograd("avil::merge", _merge_backward, setup_context=_merge_setup)
    torch.library.register_autograd("avil::dots", _dots_backward, setup_context=_dots_setup)


def merge(theta: torch.Tensor, deltas: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """θ0 + Σ_k α_k δ_k, out of place, differentiable. (N,) ← (N,), (K, N), (K,)."""
    if _EXT:
        return torch.ops.avil.merge.default(theta, deltas, alphas)
    _check("avil::merge", deltas, theta=(theta, 1), alphas=(alphas, 0))
    return reference_merge(theta, deltas, alphas)


def merge_(theta: torch.Tensor, deltas: torch.Tensor, alphas: torch.Tensor) -> None:
    """θ ← θ + Σ_k α_k δ_k, in place on theta (N,); no derivative."""
    if _EXT:
        torch.ops.avil.merge_.default(theta, deltas, alphas)
        return
    _check("avil::merge_", deltas, theta=(theta, 1), alphas=(alphas, 0))
    if torch.is_grad_enabled() and any(t.requires_grad for t in (theta, deltas, alphas)):
        raise RuntimeError(_MERGE__GRAD)
    reference_merge_(theta, deltas, alphas)


def dots(deltas: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Δ·g, (K,): the gradient with respect to α given g = ∇_θ L; differentiable."""
    if _EXT:
        return torch.ops.avil.dots.default(deltas, g)
    _check("avil::dots", deltas, g=(g, 1))
    return reference_dots(deltas, g)
