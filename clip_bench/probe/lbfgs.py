"""A general L-BFGS minimiser in torch: the probe's solver, independent of the function it minimises.

:func:`lbfgs` minimises any ``fun(theta) -> (f, grad)`` over a flat parameter vector: the two-loop
recursion with an optional fixed initial inverse Hessian ``precond`` (rescaled each iteration), a line
search satisfying the strong Wolfe conditions with cubic interpolation (Nocedal & Wright, alg. 3.5/3.6),
curvature pairs that can be seeded from an earlier run, and a caller-supplied stopping measure. It
knows nothing of logistic regression: the objective, its preconditioner and the stopping measure come
from the caller (:mod:`clip_bench.probe.objective`, :class:`clip_bench.probe.logreg.LogisticRegressionProbe`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: ``fun(theta) -> (f, grad)``: the objective and its gradient at ``theta``.
Objective = Callable[[torch.Tensor], tuple[float, torch.Tensor]]
#: ``measure(theta, grad) -> r``: the stopping measure (converged when ``r <= gtol``).
Measure = Callable[[torch.Tensor, torch.Tensor], float]
#: ``precond(v) -> H0 v``: a fixed symmetric positive definite initial inverse Hessian.
Precond = Callable[[torch.Tensor], torch.Tensor]


def _cubic_min(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float, lo: float, hi: float) -> float:
    """Minimiser of the cubic through two points with slopes, clipped to [lo, hi] (bisect if none)."""
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    sq = d1 * d1 - g1 * g2
    if sq >= 0:
        d2 = math.sqrt(sq) * (1.0 if x2 >= x1 else -1.0)
        denom = g2 - g1 + 2 * d2
        if denom != 0:
            t = x2 - (x2 - x1) * ((g2 + d2 - d1) / denom)
            if math.isfinite(t):
                return min(max(t, lo), hi)
    return (lo + hi) / 2


def _strong_wolfe(
    fun: Objective, theta: torch.Tensor, t: float, d: torch.Tensor, f0: float, g0: torch.Tensor, gtd0: float,
    c1: float = 1e-4, c2: float = 0.9, max_ls: int = 25,
) -> tuple[float, float, torch.Tensor, int]:
    """Line search satisfying the strong Wolfe conditions (Nocedal & Wright, alg. 3.5/3.6) with cubic
    interpolation. Returns (t, f, g, n_evals); t == 0 means no decrease was found."""
    d_max = float(d.abs().max())
    evals = 0
    t_prev, f_prev, gtd_prev, g_prev = 0.0, f0, gtd0, g0
    bracket = None
    while evals < max_ls:
        f_new, g_new = fun(theta + t * d)
        evals += 1
        gtd_new = float(g_new @ d)
        if f_new > f0 + c1 * t * gtd0 or (evals > 1 and f_new >= f_prev):
            bracket = [(t_prev, f_prev, gtd_prev, g_prev), (t, f_new, gtd_new, g_new)]
            break
        if abs(gtd_new) <= -c2 * gtd0:
            return t, f_new, g_new, evals
        if gtd_new >= 0:
            bracket = [(t, f_new, gtd_new, g_new), (t_prev, f_prev, gtd_prev, g_prev)]
            break
        t_next = _cubic_min(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, t + 0.01 * (t - t_prev), 10 * t)
        t_prev, f_prev, gtd_prev, g_prev = t, f_new, gtd_new, g_new
        t = t_next
    if bracket is None:  # ran out of evaluations while extrapolating: accept the last decrease
        return (t_prev, f_prev, g_prev, evals) if t_prev > 0 else (0.0, f0, g0, evals)
    lo, hi = bracket  # lo: lowest f so far satisfying sufficient decrease (or t=0)
    while evals < max_ls:
        if abs(hi[0] - lo[0]) * d_max < 1e-12:
            break
        a, b = sorted((lo[0], hi[0]))
        span = b - a
        t = _cubic_min(lo[0], lo[1], lo[2], hi[0], hi[1], hi[2], a + 0.1 * span, b - 0.1 * span)
        f_new, g_new = fun(theta + t * d)
        evals += 1
        gtd_new = float(g_new @ d)
        if f_new > f0 + c1 * t * gtd0 or f_new >= lo[1]:
            hi = (t, f_new, gtd_new, g_new)
        else:
            if abs(gtd_new) <= -c2 * gtd0:
                return t, f_new, g_new, evals
            if gtd_new * (hi[0] - lo[0]) >= 0:
                hi = lo
            lo = (t, f_new, gtd_new, g_new)
    if lo[0] > 0:
        return lo[0], lo[1], lo[3], evals
    return 0.0, f0, g0, evals


@dataclass
class LbfgsResult:
    """Where :func:`lbfgs` stopped: the parameters, f there, the work done, why it stopped."""

    theta: torch.Tensor
    objective: float
    n_iter: int
    n_evals: int
    converged: bool
    message: str
    residual: float = math.nan  # the stopping measure at theta
    S: list[torch.Tensor] | None = None  # the final curvature pairs (steps and gradient changes)
    Y: list[torch.Tensor] | None = None


#: Prefixes of the messages of a stop that is a stall (f flat at the working precision), not a cap.
STALLS = ("stalled", "line search")


def _direction(
    g: torch.Tensor, S: list[torch.Tensor], Y: list[torch.Tensor], rho: list[float], precond: Precond
) -> torch.Tensor:
    """The L-BFGS direction ``-H g`` (two-loop recursion; H0 = precond, rescaled by s'y / y'H0y)."""
    q = g.neg()
    alphas = []
    for s, y, rh in zip(reversed(S), reversed(Y), reversed(rho), strict=True):
        a = rh * float(s @ q)
        alphas.append(a)
        q.add_(y, alpha=-a)
    q = precond(q)
    if S:
        q.mul_(float(S[-1] @ Y[-1]) / float(Y[-1] @ precond(Y[-1])))
    for s, y, rh, a in zip(S, Y, rho, reversed(alphas), strict=True):
        beta = rh * float(y @ q)
        q.add_(s, alpha=a - beta)
    return q


def _informative(sy: float, y: torch.Tensor) -> bool:
    """Whether a curvature pair (s, y) with s'y = ``sy`` is worth keeping: positive curvature above
    the working precision (else the L-BFGS update would not stay positive definite)."""
    return sy > float(torch.finfo(y.dtype).eps) * float(y @ y)


def lbfgs(fun: Objective, theta0: torch.Tensor, *, max_iter: int, gtol: float, ftol: float, history: int = 10,
          max_evals: int = 15000, measure: Measure | None = None, precond: Precond | None = None,
          flat_tol: float | None = None,
          memory: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None) -> LbfgsResult:
    """Minimise ``fun(theta) -> (f, grad)`` with L-BFGS (two-loop recursion, strong-Wolfe search).

    Converged means ``measure(theta, grad) <= gtol`` (default measure: max|grad|, scipy's pgtol).
    It also stops when the relative decrease of f over one iteration is <= ``ftol`` or the line search
    finds no decrease (f is flat at the working precision: more iterations cannot help), or after
    ``max_iter`` iterations / ``max_evals`` evaluations; such a stop is *not* converged, except when
    ``flat_tol`` is given and the quasi-Newton decrement ``g' H g / 2`` (the model's estimate of
    f - f*) is <= ``flat_tol * |f|`` there: the objective is then optimal to its working precision.
    ``precond(v)`` applies a fixed SPD initial inverse-Hessian H0 (default identity). ``memory`` seeds
    the curvature pairs (S, Y) (e.g. from a fit of a neighbouring problem); pairs with s'y <= 0 are
    dropped. The result carries the final pairs."""
    if precond is None:
        def precond(v: torch.Tensor) -> torch.Tensor:
            return v
    if measure is None:
        def measure(theta: torch.Tensor, g: torch.Tensor) -> float:
            return float(g.abs().max())
    theta = theta0.clone()
    f, g = fun(theta)
    n_evals = 1
    S: list[torch.Tensor] = []
    Y: list[torch.Tensor] = []
    rho: list[float] = []
    for s, y in zip(*(memory or ((), ())), strict=True):
        sy = float(s @ y)
        if _informative(sy, y):
            S.append(s), Y.append(y), rho.append(1.0 / sy)
    del S[:-history], Y[:-history], rho[:-history]
    n_iter = 0
    r = measure(theta, g)

    def result(converged: bool, message: str) -> LbfgsResult:
        return LbfgsResult(theta, f, n_iter, n_evals, converged, message, r, S, Y)

    if r <= gtol:
        return result(True, "converged at start")

    def stalled(message: str, gtd: float) -> LbfgsResult:
        if flat_tol is not None and S and 0 <= -gtd / 2 <= flat_tol * abs(f):
            return result(True, "converged: f optimal to working precision")
        return result(False, message)

    while True:
        d = _direction(g, S, Y, rho, precond)
        gtd = float(g @ d)
        if gtd >= 0:  # not a descent direction (numerical trouble): restart from steepest descent
            S.clear(), Y.clear(), rho.clear()
            d = precond(g.neg())
            gtd = float(g @ d)
        t = 1.0 if S else min(1.0, 1.0 / float(d.norm()))
        t, f_new, g_new, ev = _strong_wolfe(fun, theta, t, d, f, g, gtd)
        n_evals += ev
        n_iter += 1
        if t == 0.0:
            return stalled("line search found no decrease", gtd)
        s = d.mul_(t)
        y = g_new - g
        sy = float(s @ y)
        theta.add_(s)
        f_old, f, g = f, f_new, g_new
        if _informative(sy, y):
            if len(S) == history:
                S.pop(0), Y.pop(0), rho.pop(0)
            S.append(s)
            Y.append(y)
            rho.append(1.0 / sy)
        r = measure(theta, g)
        if r <= gtol:
            return result(True, "converged")
        if (f_old - f) <= ftol * max(abs(f_old), abs(f)):
            return stalled("stalled: relative decrease below ftol", float(g @ _direction(g, S, Y, rho, precond)))
        if n_iter >= max_iter:
            return result(False, "max_iter reached")
        if n_evals >= max_evals:
            return result(False, "max_evals reached")
