"""The α-step of αVIL: how much of each task's update to keep.

Algorithm 1 of arXiv 2405.07769 tunes the mixing weights α of the task
updates δ_t on the target's dev loss. This module states that as an
optimisation problem over K numbers and solves it (docs/design.md, "The
α-step"):

    minimise over α ∈ R^K   F(α) = L_dev(θ0 + Δᵀα) + (λ/2) ‖α − α_init‖²
    subject to              α_min ≤ α_k ≤ α_max,  |α_k − α_init,k| ≤ r

L_dev is the target's dev loss on a fixed subset of its dev set, ∇_α L_dev =
Δ·∇_θ L_dev(θ0 + Δᵀα), and the box, the radius r and the proximal term λ
are the trust region: without it an exact solve extrapolates along the deltas (α of −19
and +10 were measured on MultiMNIST's extended suite), which fits the dev
subset by moving θ far outside the region the task passes explored.

Solvers (``FitConfig.alpha_solver``):
  "lbfgs"  L-BFGS-B (scipy): projected quasi-Newton with a line search, run
           to convergence or ``alpha_max_iter`` iterations. K is small (one
           α per task), so a few iterations reach the optimum of F.
  "adam", "sgd"  the paper's sketch: ``alpha_steps`` first-order steps of
           size ``alpha_lr`` from α_init, projected onto the box after each.

Every solve returns its diagnostics (AlphaStep): the dev loss at α_init and
at the chosen α, iterations, function evaluations, the α on a bound and the
seconds spent, which History records per epoch.
"""
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

SOLVERS = ("lbfgs", "adam", "sgd")

# objective(α (K,) float32) -> (L_dev(θ0 + Δᵀα), ∇_α L_dev (K,)): the dev loss only, no penalty.
Objective = Callable[[torch.Tensor], Tuple[float, torch.Tensor]]


@dataclass
class AlphaStep:
    """What one α-step did (one per epoch in ``History.alpha_step``).

    loss_init: target dev loss (on the α-step's dev subset) at α_init.
    loss_final: the same at the chosen α.
    iterations: solver iterations (first-order steps for "adam"/"sgd").
    evaluations: evaluations of the dev loss and its gradient.
    on_bound: tasks whose α ended on α_min or α_max.
    seconds: wall time of the whole α-step (dev forward/backward passes included).
    converged: the solver met its tolerance ("lbfgs"); always False for a
        fixed number of first-order steps.
    gradient_init: {task: ∂L_dev/∂α_t at α_init}, from the solver's first
        evaluation: below 0, more of that task's update would have lowered
        the target's dev loss.
    loss_without: with ``FitConfig.alpha_ablation``, {task: the dev loss at
        the chosen α with that task's α set to 0}: how much the merged model
        leans on each task's update (above loss_final: the update helped).
    """

    loss_init: float
    loss_final: float
    iterations: int
    evaluations: int
    on_bound: List[str]
    seconds: float
    converged: bool
    gradient_init: Dict[str, float]
    loss_without: Optional[Dict[str, float]] = None

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


class CountedObjective:
    """Wraps the objective: counts evaluations, adds the proximal term, keeps
    the best point seen, and remembers the dev loss at the first point."""

    def __init__(self, objective: Objective, init: torch.Tensor, penalty: float):
        self.objective = objective
        self.init = init.detach().clone()  # (K,)
        self.penalty = penalty
        self.evaluations = 0
        self.first_loss: Optional[float] = None
        self.first_gradient: Optional[torch.Tensor] = None  # (K,), of the dev loss alone
        self.best: Optional[Tuple[float, float, torch.Tensor]] = None  # (F, L_dev, α)

    def __call__(self, alphas: torch.Tensor) -> Tuple[float, float, torch.Tensor]:
        """(F(α), L_dev(α), ∇F(α) (K,))."""
        loss, grad = self.objective(alphas)
        self.evaluations += 1
        if not (math.isfinite(loss) and torch.isfinite(grad).all()):
            raise ValueError(
                f"the α-step's objective is non-finite at α = {[round(a, 4) for a in alphas.tolist()]} "
                f"(loss {loss}, gradient {grad.tolist()}). Fix: check the dev data and loss for invalid "
                "values, or bound α (alpha_min, alpha_max).")
        if self.first_loss is None:
            self.first_loss, self.first_gradient = loss, grad.detach().clone()
        offset = alphas - self.init  # (K,)
        total = loss + 0.5 * self.penalty * float(offset @ offset)
        grad = grad + self.penalty * offset
        if self.best is None or total < self.best[0]:
            self.best = (total, loss, alphas.detach().clone())
        return total, loss, grad


def solve(objective: Objective, init: torch.Tensor, names: Sequence[str], *, solver: str = "lbfgs",
          alpha_min: Optional[float] = 0.0, alpha_max: Optional[float] = None, radius: Optional[float] = None,
          penalty: float = 0.0, max_iter: int = 30, tol: float = 1e-5, steps: int = 10,
          lr: float = 0.05) -> Tuple[torch.Tensor, AlphaStep]:
    """Minimise F(α) from ``init`` (K,) inside the trust region: the box
    [alpha_min, alpha_max] (None: unbounded on that side) intersected with
    |α_k − init_k| ≤ radius (None: no radius).

    Returns the chosen α (K,) and the AlphaStep diagnostics. The solve is
    deterministic: it depends only on the objective's values.
    """
    if solver not in SOLVERS:
        raise ValueError(f"α solver {solver!r}: must be one of {SOLVERS}.")
    start = time.perf_counter()
    low = -math.inf if alpha_min is None else alpha_min
    high = math.inf if alpha_max is None else alpha_max
    init = init.detach().float().clamp(low, high)  # (K,)
    lo = torch.full_like(init, float(low))  # (K,)
    hi = torch.full_like(init, float(high))  # (K,)
    if radius is not None:
        lo, hi = torch.maximum(lo, init - radius), torch.minimum(hi, init + radius)
    f = CountedObjective(objective, init, penalty)
    if solver == "lbfgs":
        alphas, iterations, converged = _lbfgs(f, init, lo, hi, max_iter, tol)
    else:
        alphas, iterations = _first_order(f, init, lo, hi, solver, steps, lr)
        converged = False
    final_loss = f.best[1] if solver == "lbfgs" else f(alphas)[1]
    on_bound = [name for name, a, low, high in zip(names, alphas.tolist(), lo.tolist(), hi.tolist())
                if a <= low or a >= high]
    return alphas, AlphaStep(
        loss_init=float(f.first_loss), loss_final=float(final_loss), iterations=iterations,
        evaluations=f.evaluations, on_bound=on_bound, seconds=time.perf_counter() - start,
        converged=converged, gradient_init=dict(zip(names, f.first_gradient.tolist())))


def _lbfgs(f: CountedObjective, init: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, max_iter: int,
           tol: float):
    """L-BFGS-B to convergence; returns the best α evaluated (the solver's
    iterate unless a line search ended on a worse point)."""
    from scipy.optimize import minimize  # on first use: it takes a while to import, and `import avil` need not

    def fun(x: np.ndarray):
        total, _, grad = f(torch.from_numpy(x).float())
        return total, grad.double().numpy()

    # ±inf is no bound: scipy turns None into ±inf itself (old_bound_to_new).
    bounds = list(zip(lo.tolist(), hi.tolist()))
    result = minimize(fun, init.double().numpy(), jac=True, method="L-BFGS-B", bounds=bounds,
                      # ftol: relative decrease of F per iteration; gtol: projected gradient.
                      options={"maxiter": max_iter, "maxfun": 2 * max_iter + 5, "ftol": tol, "gtol": tol})
    # L-BFGS-B stops on success, on maxiter or maxfun; anything else (e.g. an
    # abnormal line search) still leaves the best point seen, which is used.
    return f.best[2], int(result.nit), bool(result.success)


def _first_order(f: CountedObjective, init: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, solver: str,
                 steps: int, lr: float):
    alphas = init.clone().requires_grad_(True)  # (K,)
    optimizer = (torch.optim.Adam if solver == "adam" else torch.optim.SGD)([alphas], lr=lr)
    for _ in range(steps):
        _, _, grad = f(alphas.detach())
        alphas.grad = grad
        optimizer.step()
        with torch.no_grad():
            torch.maximum(torch.minimum(alphas, hi, out=alphas), lo, out=alphas)
    return alphas.detach(), steps
