"""L2-regularised logistic regression on cached features: the paper's probe, fast.

The CLIP paper fits ``sklearn.linear_model.LogisticRegression(solver="lbfgs", max_iter=1000, C=C)``
with every other argument at its default. :class:`LogisticRegressionProbe` offers that exact call
(``solver="sklearn"``) and a full-batch L-BFGS in torch (``solver="torch"``) that minimises the *same*
objective, so the two are interchangeable and the torch one can be checked against the reference.

The objective (scikit-learn 1.9 scaling, ``_logistic.py`` / ``_linear_loss.py``)::

    F(W, b) = (1/n) * sum_i CE(x_i W^T + b, y_i) + 1/(2 C n) * ||W||^2        (intercept not penalised)

i.e. the textbook ``sum_i CE + ||W||^2 / (2C)`` divided by n: the same minimiser, and the value
``objective_`` reported by this module is always this mean-scaled F (multiply by n for the sum form).
``CE`` is the softmax cross-entropy for three or more classes (sklearn's multinomial model, one weight
row per class), the binary log-loss with a *single* logit for two classes (sklearn's binary model:
``coef_`` has shape (1, d), ``predict_proba`` is ``[1 - p, p]``), and, with ``multilabel=True``, a sum
of independent binary problems, one per column of a multi-hot target (one-vs-rest, as VOC2007 mAP
needs).

Stopping (torch solver, ``criterion="relative"``, the default): converged means the relative
optimality residual (``_Problem.kkt_ratio``) is <= ``tol`` (default 1e-2): the gradient in W relative
to the penalty's gradient ``W / (C n)``, which it must cancel at the optimum, and the intercept's
gradient relative to the spread of the logits. It bounds the distance to the optimum
(``||W - W*|| <= tol ||W||``) and means the same at every C and from any start: a warm start from the
neighbouring grid C starts at a residual of ``|1 - C_old / C|`` (>= 0.25), so it cannot pass without
iterating. When float32 cannot get there (the attainable residual is about eps32 x the condition
number, i.e. large C), the fit is finished in float64 from where it stopped; in float64 a fit whose
objective is optimal to the working precision (quasi-Newton decrement <= 1e3 eps |F|) also counts
as converged. Anything else (the ``max_iter`` cap, a stall) is recorded as ``converged_ = False``
with ``stop_reason_``. ``criterion="sklearn"`` restores scipy's test as sklearn calls it
(``max|grad| <= tol``, sklearn's ``tol=1e-4``), which at large C stops well before the optimum and,
from a warm start, often after 0 iterations. The loss is written so that tiny per-example losses
(large C on separable data) keep their precision in float32.

Along a C path (the sweep) two things make the fits cheaper without touching what they converge to:
``path_start`` starts each fit linearly in log C through two fitted neighbours (interpolation between
the nearest fitted C on either side, else extrapolation), and ``lbfgs_memory`` hands the previous
fit's L-BFGS curvature pairs to the next one (the penalty's part of each pair is re-computed at the
new C, so only the data curvature is carried over). On the benchmark data they cut the loss
evaluations of a sweep by about 2.5x. An interpolated start can already pass the relative test: the
fit then takes 0 iterations, and that is still the bound above, ``||W - W*|| <= tol ||W||`` at *this*
C (the old absolute test, by contrast, passed at the neighbour's solution).

scikit-learn now divides the lbfgs objective by n (PR #26721, 2023) and kept ``tol``; the paper
(2021) ran an older sklearn whose gradient test applied to the *summed* objective. With today's
``tol=1e-4`` and large C the sklearn fit stops well before the optimum, so where it stops depends on
the optimiser's path; tests compare against a tightly converged sklearn instead
(tests/test_probe_logreg.py, benchmarks/bench_probe.py --parity).
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from clip_bench.probe.rows import RowView, TorchRows
from clip_bench.util.errors import ClipBenchError

SOLVERS = ("torch", "sklearn")
_PARAM_NAMES = (
    "C", "solver", "max_iter", "tol", "device", "multilabel", "dtype", "batch_rows", "history",
    "warm_start", "center", "precondition", "n_threads", "criterion",
)
CRITERIA = ("relative", "sklearn")
DEFAULT_TOL = {"relative": 1e-2, "sklearn": 1e-4}
_HALF_DTYPES = (np.float16,)


@contextmanager
def _limit_threads(n_threads: int | None):
    """Temporarily cap torch and BLAS threads (a shared machine punishes oversubscribed spin-waiting
    threads badly: with 2 busy cores a 2-thread torch op can be 5x slower than a 1-thread one)."""
    if n_threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        with threadpool_limits(limits=n_threads):
            yield
    finally:
        torch.set_num_threads(before)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return {"float32": torch.float32, "float64": torch.float64}[str(dtype)]
    except KeyError:
        raise ClipBenchError(f"probe dtype must be 'float32' or 'float64', got {dtype!r}") from None


def torch_to_numpy(dtype: torch.dtype) -> type:
    """The NumPy scalar type of a torch float dtype."""
    return {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}[dtype]


def _feature_tensor(
    X: np.ndarray | torch.Tensor, dtype: torch.dtype, device: torch.device, batch_rows: int
) -> torch.Tensor:
    """Put features on ``device`` once, filling in row batches so a float16 memmap is never
    materialised in full at a wider dtype. Half-precision input stays half (half the memory);
    the loss casts each row chunk to ``dtype`` on the fly."""
    if isinstance(X, torch.Tensor):
        keep = X.dtype in (torch.float16, torch.bfloat16) or X.dtype == dtype
        return X.to(device=device, dtype=X.dtype if keep else dtype)
    if X.ndim != 2:
        raise ClipBenchError(f"features must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    store = torch.float16 if X.dtype in _HALF_DTYPES else dtype
    np_store = torch_to_numpy(store)
    if device.type == "cpu" and X.dtype == np_store:  # used in place, no copy
        if isinstance(X, RowView):
            return TorchRows(X)  # rows gathered a chunk at a time by the loss
        if isinstance(X, np.ndarray) and X.flags.c_contiguous:
            with warnings.catch_warnings():  # read-only memmaps: we never write to the tensor
                warnings.simplefilter("ignore", UserWarning)
                return torch.from_numpy(np.asarray(X))
    out = torch.empty(X.shape, dtype=store, device=device)
    for i in range(0, X.shape[0], batch_rows):
        out[i : i + batch_rows] = torch.from_numpy(np.ascontiguousarray(X[i : i + batch_rows], dtype=np_store))
    return out


@dataclass
class _Problem:
    """Device-side data of one fit; ``kind`` is 'multinomial' (targets = class index) or 'binary'
    (targets = 0/1 matrix, one column per independent logit).

    The optimiser works in centred coordinates ``theta = (W, b')`` with ``b' = b + W mu`` (mu: mean
    training feature), so logits are ``(x - mu) W^T + b'``. Because the intercept is not penalised this
    is an exact re-parametrisation of the same objective (same W, same F), but it removes the coupling
    between W and b that a large common feature offset (typical of CLIP features) creates, which
    otherwise slows L-BFGS down. Centering is folded into the intercept, so it costs nothing per chunk.
    """

    X: torch.Tensor
    target: torch.Tensor
    kind: str
    n_outputs: int
    l2: float  # 1 / (C * n)
    dtype: torch.dtype
    batch_rows: int
    mu: torch.Tensor  # (d,) mean feature, zeros to disable centering
    spread: float = 1.0  # RMS per-feature standard deviation of the features (sets the logit scale)
    mu64: torch.Tensor | None = None  # mu in float64 (identifies the coordinates of an LbfgsMemory)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, d = self.n_outputs, self.d
        return theta[: k * d].view(k, d), theta[k * d :]

    def to_theta(self, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        theta = torch.empty(self.n_outputs * (self.d + 1), dtype=self.dtype, device=self.X.device)
        tW, tb = self.split(theta)
        tW.copy_(W)
        tb.copy_(b + W @ self.mu)
        return theta

    def from_theta(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W, bc = self.split(theta)
        return W, bc - W @ self.mu

    def raw_grad_maxabs(self, grad: torch.Tensor) -> float:
        """max |dF/d(W, b)| in the original (uncentred) coordinates: sklearn's stopping quantity."""
        gW, gb = self.split(grad)
        return max(float((gW + gb[:, None] * self.mu).abs().max()), float(gb.abs().max()))

    def kkt_ratio(self, theta: torch.Tensor, grad: torch.Tensor) -> float:
        """The relative optimality residual: the larger of

        * ``||dF/dW|| / ||l2 W||`` (2-norms, centred coordinates). At the optimum the data gradient
          equals ``-l2 W``, so this is the residual relative to the size of the two terms that must
          cancel. Strong convexity (``l2`` on W) bounds the distance to the optimum,
          ``||W - W*|| <= ratio * ||W||``, and the objective gap, ``F - F* <= ratio^2 * F``;
        * ``c * ||dF/db|| / (||W|| * spread)`` (c = max(4, K), an upper bound on the inverse curvature
          in b): the intercept error relative to the spread of the logits ``W x``, which matters at
          small C, where the logits barely differ between classes (floored at sqrt(eps) x ||b||:
          finer logits than that are not resolved at the working precision).

        It means the same at every C and from any start: a warm start from the neighbouring grid C has
        ``||dF/dW|| / ||l2 W|| = |1 - C_old / C|`` (>= 0.25 for one grid step), never a small number."""
        k, d = self.n_outputs, self.d
        gW, gb = self.split(grad)
        w = theta[: k * d]
        wn = math.sqrt(float(torch.dot(w, w)))
        gwn, gbn = float(gW.norm()), float(gb.norm())
        if wn == 0.0:
            return math.inf if (gwn > 0 or gbn > 0) else 0.0
        # the logits' W part cannot be resolved below the working precision of the intercept
        floor = math.sqrt(float(torch.finfo(self.dtype).eps)) * float(theta[k * d :].norm())
        return max(gwn / (self.l2 * wn), max(4.0, k) * gbn / max(wn * self.spread, floor))

    def loss_grad(self, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Objective F and its gradient w.r.t. theta, accumulated over row chunks (loss summed in
        float64, gradient in the compute dtype)."""
        W, bc = self.split(theta)
        grad = torch.zeros_like(theta)
        gW, gb = self.split(grad)
        total = 0.0
        for i in range(0, self.n, self.batch_rows):
            # Centre each chunk explicitly: folding mu into the intercept instead would compute the
            # logits and the gradient as differences of large numbers (a common feature offset) and
            # cap the attainable accuracy in float32.
            Xc = self.X[i : i + self.batch_rows].to(self.dtype) - self.mu
            tc = self.target[i : i + self.batch_rows]
            Z = torch.addmm(bc, Xc, W.T)
            if self.kind == "multinomial":
                # Softmax in place, written so that tiny losses keep their precision (large C on
                # separable data drives every loss towards 0, where log(sum exp) - z_y cancels):
                # q = exp(z - max), others = sum of q over the wrong classes,
                # CE = log1p(others) when the true class has the largest logit, else log(sum q) + (max - z_y);
                # dCE/dz_y = -others / sum q (not p_y - 1).
                m = Z.amax(dim=1, keepdim=True)
                zy = Z.gather(1, tc[:, None])
                G = Z.sub_(m).exp_()
                qy = G.gather(1, tc[:, None])
                G.scatter_(1, tc[:, None], 0.0)
                others = G.sum(dim=1, keepdim=True)
                s = others + qy
                gap = m - zy
                loss = torch.where(gap > 0, s.log() + gap, torch.log1p(others))
                total += float(loss.sum(dtype=torch.float64))
                G.div_(s)
                G.scatter_(1, tc[:, None], others.div_(s).neg_())
            else:
                sign = 1.0 - 2.0 * tc  # +1 for a negative target, -1 for a positive one
                Z.mul_(sign)  # sign * z: the loss is softplus(sign * z), the gradient sign * sigmoid(sign * z)
                total += float(torch.nn.functional.softplus(Z).sum(dtype=torch.float64))
                G = torch.sigmoid_(Z).mul_(sign)
            gW.addmm_(G.T, Xc)
            gb.add_(G.sum(0))
        grad.div_(self.n)
        gW.add_(W, alpha=self.l2)
        w = theta[: self.n_outputs * self.d]
        sq = float(torch.dot(w, w))
        return total / self.n + 0.5 * self.l2 * sq, grad


_EIG_CACHE: dict = {}  # one entry: the last feature sample's covariance eigendecomposition


def _covariance_eig(prob: _Problem, min_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues and vectors (float64) of the centred feature covariance from a row subsample. A C
    sweep fits the same features over and over: the last result is reused when the subsample and the
    centre are exactly the same (it only steers the optimiser; the objective is untouched)."""
    X = prob.X
    rows = max(min_rows, 4 * prob.d)
    step = max(1, -(-X.shape[0] // rows))
    raw = X[::step]
    mu = prob.mu64 if prob.mu64 is not None else prob.mu.double()
    hit = _EIG_CACHE.get("key")
    if (hit is not None and hit[0].shape == raw.shape and hit[0].dtype == raw.dtype and hit[0].device == raw.device
            and torch.equal(hit[1], mu) and torch.equal(hit[0], raw)):
        return _EIG_CACHE["eig"]
    work = torch.float64 if prob.dtype == torch.float64 else torch.float32
    Xs = raw.to(work) - mu.to(work)
    cov = (Xs.T @ Xs).to(torch.float64) / Xs.shape[0]
    lam, Q = torch.linalg.eigh(cov)
    _EIG_CACHE["key"] = (raw.clone(), mu.clone())
    _EIG_CACHE["eig"] = (lam.clamp_min(0), Q)
    return _EIG_CACHE["eig"]


def _spectral_precond(prob: _Problem, min_rows: int = 4096):
    """H0 ~ (Sigma + eps I)^-1 on W (Sigma: centred feature covariance from a row subsample, eps ~ the
    penalty's share of the Hessian), a matching constant on the intercept: an approximate inverse Hessian that
    undoes feature anisotropy. It only steers L-BFGS; the objective is untouched."""
    lam, Q = _covariance_eig(prob, min_rows)
    eps = max(prob.l2 * prob.n_outputs, 1e-4 * float(lam.mean()))
    scale = float(lam.mean()) + eps
    D = (scale / (lam + eps)).to(prob.dtype)
    Q = Q.to(prob.dtype)
    k, d = prob.n_outputs, prob.d

    def precond(v: torch.Tensor) -> torch.Tensor:
        out = v.clone()
        out[: k * d].view(k, d).copy_(((v[: k * d].view(k, d) @ Q) * D) @ Q.T)
        # intercept block on the same footing: its curvature ~1/K against ~(lam + K l2)/K for W, so
        # relative to D it is scaled by ``scale`` (without this, small-C fits crawl in b)
        out[k * d :].mul_(scale)
        return out

    return precond


def _feature_moments(X: torch.Tensor, batch_rows: int) -> tuple[torch.Tensor, float]:
    """(mean feature in float64, RMS per-feature standard deviation) in two cheap passes: column sums
    as matrix-vector products accumulated across chunks in float64, then the sum of squares of the
    centred chunks (no cancellation against a large common offset)."""
    work = torch.float64 if X.dtype == torch.float64 else torch.float32
    ones = torch.ones(min(batch_rows, X.shape[0]), dtype=work, device=X.device)
    acc = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device)
    for i in range(0, X.shape[0], batch_rows):
        chunk = X[i : i + batch_rows].to(work)
        acc += (ones[: chunk.shape[0]] @ chunk).to(torch.float64)
    mu = acc / X.shape[0]
    mu_w = mu.to(work)
    sq = 0.0
    for i in range(0, X.shape[0], batch_rows):
        chunk = (X[i : i + batch_rows].to(work) - mu_w).view(-1)
        sq += float(torch.dot(chunk, chunk))
    if not (math.isfinite(sq) and bool(torch.isfinite(mu).all())):
        raise ClipBenchError(_NON_FINITE_FEATURES)
    var = sq / X.shape[0] / X.shape[1]
    return mu, math.sqrt(var) if var > 0 else 1.0


_NON_FINITE_FEATURES = ("the probe's features contain NaN or inf values (or values too large to square in float32); "
                        "a damaged feature cache: delete it and re-extract (or --no-cache)")


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


def _strong_wolfe(fun, theta, t, d, f0, g0, gtd0, c1=1e-4, c2=0.9, max_ls=25):
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
    theta: torch.Tensor
    objective: float
    n_iter: int
    n_evals: int
    converged: bool
    message: str
    residual: float = math.nan  # the stopping measure at theta
    S: list | None = None  # the final curvature pairs (steps and gradient changes)
    Y: list | None = None


_STALLS = ("stalled", "line search")


@dataclass
class LbfgsMemory:
    """L-BFGS curvature pairs of a finished fit, kept to seed the next fit on the same features (a C
    sweep): steps ``S`` and the *data* part of the gradient changes ``Yd`` (the penalty's part,
    ``l2 * s`` on W, is re-added at the new C, so the pairs are exact for the change of C), in the
    centred coordinates of ``mu``. Only steers the optimiser: the stopping test, hence the solution,
    does not depend on it."""

    S: list
    Yd: list
    mu: torch.Tensor  # float64 mean feature the coordinates are centred on
    shape: tuple[int, int]  # (outputs, features)
    kind: str
    l2: float  # the penalty weight 1 / (C n) of the fit they come from

    # Pairs from a C further away than this are not used. Measured on the benchmark data: from a
    # path_start (log-C extrapolated) start they save iterations even across the sweep's 100x coarse
    # steps (about 20% fewer loss evaluations over a sweep); from the bare neighbour's solution, a
    # 100x step took ~15% more iterations with them.
    MAX_C_RATIO = 1e3

    def pairs(self, prob: _Problem) -> tuple[list, list] | None:
        """(S, Y) for ``prob`` (its C and dtype), or None if the pairs belong to another problem layout
        or to a C too far away."""
        if (self.shape != (prob.n_outputs, prob.d) or self.kind != prob.kind or self.mu.shape != prob.mu.shape
                or max(self.l2 / prob.l2, prob.l2 / self.l2) > self.MAX_C_RATIO
                or not torch.equal(self.mu.to(device=prob.mu.device), prob.mu64)):
            return None
        S, Y = [], []
        kd = prob.n_outputs * prob.d
        for s, yd in zip(self.S, self.Yd, strict=True):
            s = s.to(device=prob.X.device, dtype=prob.dtype)
            y = yd.to(device=prob.X.device, dtype=prob.dtype)
            y[:kd].add_(s[:kd], alpha=prob.l2)
            S.append(s), Y.append(y)
        return S, Y

    @classmethod
    def of(cls, prob: _Problem, res: LbfgsResult) -> LbfgsMemory:
        kd = prob.n_outputs * prob.d
        Yd = []
        for s, y in zip(res.S or [], res.Y or [], strict=True):
            yd = y.clone()
            yd[:kd].sub_(s[:kd], alpha=prob.l2)
            Yd.append(yd.to(torch.float32))
        return cls([s.to(torch.float32) for s in res.S or []], Yd, prob.mu64.cpu(), (prob.n_outputs, prob.d), prob.kind,
                   prob.l2)


def _direction(g: torch.Tensor, S: list, Y: list, rho: list, precond) -> torch.Tensor:
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


def lbfgs(fun, theta0: torch.Tensor, *, max_iter: int, gtol: float, ftol: float, history: int = 10,
          max_evals: int = 15000, measure=None, precond=None, flat_tol: float | None = None,
          memory: tuple[list, list] | None = None) -> LbfgsResult:
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
        def precond(v):
            return v
    if measure is None:
        def measure(theta, g):
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


def path_start(solutions: dict[float, tuple], C: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A warm start for the fit at ``C`` from fits at other C on the same data (a C path):
    ``solutions`` maps C to ``(coef, intercept, classes)``. The start is linear in log C through two
    fitted C: the nearest on either side (interpolation), else the two nearest on one side
    (extrapolation, by at most their own span). Coefficients move smoothly with log C, so this lands
    far closer than the nearest solution alone (on the benchmark data, a 100x step from two earlier
    100x steps needs about half the iterations). If the two fits have different layouts (classes),
    the nearest one is returned as is. It is only the start: the stopping test, hence the solution,
    does not depend on it."""
    if not solutions:
        raise ClipBenchError("path_start needs at least one fitted C")
    if C in solutions:
        return solutions[C]
    near = sorted(solutions, key=lambda c: (abs(math.log(c / C)), c))
    below, above = [c for c in solutions if c < C], [c for c in solutions if c > C]
    if below and above:
        a, b = max(below), min(above)
    elif len(near) >= 2:
        b = near[0]
        side = below if b < C else above
        rest = [c for c in side if c != b]
        if not rest:
            return solutions[b]
        a = min(rest, key=lambda c: abs(math.log(c / b)))
    else:
        return solutions[near[0]]
    (Wa, ba, ka), (Wb, bb, kb) = solutions[a], solutions[b]
    if np.shape(Wa) != np.shape(Wb) or np.shape(ba) != np.shape(bb) or not np.array_equal(ka, kb):
        return solutions[near[0]]
    t = min(math.log(C / a) / math.log(b / a), 2.0)
    Wa, Wb = np.asarray(Wa), np.asarray(Wb)
    ba, bb = np.asarray(ba), np.asarray(bb)
    return (Wa + t * (Wb - Wa)).astype(Wb.dtype), (ba + t * (bb - ba)).astype(bb.dtype), kb


def logistic_objective(
    X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: np.ndarray, C: float, multilabel: bool = False
) -> float:
    """The probe objective F (sklearn 1.9 scaling, see module docstring) in float64 NumPy, for any
    coefficients: lets a caller compare solvers on the same footing. ``y`` holds class labels
    (single-label: sorted unique labels define the column order) or a multi-hot matrix."""
    X = np.asarray(X, dtype=np.float64)
    coef = np.asarray(coef, dtype=np.float64)
    intercept = np.asarray(intercept, dtype=np.float64)
    n = X.shape[0]
    Z = X @ coef.T + intercept
    if multilabel or coef.shape[0] == 1:
        if multilabel:
            T = np.asarray(y, dtype=np.float64)
        else:
            T = (np.asarray(y) == np.unique(y)[1]).astype(np.float64)[:, None]
        data = np.sum(np.logaddexp(0.0, Z) - T * Z)
    else:
        idx = np.searchsorted(np.unique(y), y)
        m = Z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True)))[:, 0]
        data = np.sum(lse - Z[np.arange(n), idx])
    return float(data / n + 0.5 / (C * n) * np.sum(coef * coef))


class LogisticRegressionProbe:
    """Scikit-learn-style L2 logistic regression: the paper's probe with a fast torch solver.

    Parameters
    ----------
    C: inverse regularisation strength, as in sklearn (penalty ``||W||^2 / (2C)`` on the summed loss).
    solver: ``"torch"`` (full-batch L-BFGS, CPU or CUDA) or ``"sklearn"`` (the paper's exact call:
        ``LogisticRegression(solver="lbfgs", max_iter=max_iter, C=C)``, ``tol`` at sklearn's default).
    max_iter: L-BFGS iteration cap (both solvers).
    tol: torch solver's tolerance on the stopping measure (default: 1e-2 for the relative residual,
        1e-4 for ``criterion="sklearn"``). The sklearn solver always keeps sklearn's default (1e-4),
        as in the paper's call.
    device: torch device (default: CUDA if available, else CPU). Ignored by the sklearn solver.
    multilabel: y is a multi-hot (N, K) matrix; fit K independent binary models (one-vs-rest).
    dtype: ``"float32"`` (default) or ``"float64"`` compute precision for the torch solver.
    batch_rows: rows per chunk when accumulating loss and gradient (default: 2**22 / max(d, K) rows
        on CPU, which keeps a chunk in cache; 2**26 / max(d, K) on CUDA).
    history: L-BFGS memory (scipy's default ``maxcor=10``).
    warm_start: like sklearn, start from the previous ``coef_``/``intercept_`` on refit.
    center: optimise in mean-centred coordinates (exact re-parametrisation, see ``_Problem``); torch only.
    precondition: use the feature covariance as L-BFGS's initial inverse Hessian; torch only. About
        half the iterations; it steers the optimiser, the solution is the same (on by default).
    criterion: ``"relative"`` (default: the relative optimality residual, see the module docstring)
        or ``"sklearn"`` (scipy's max-abs gradient test).
    n_threads: cap torch/BLAS threads during ``fit`` (None: leave the process setting alone).

    Memory (torch solver): features are copied to the device once, at their own width if they are
    float16 (else at ``dtype``): N*d*2 bytes for half input, N*d*4 for float32. Add ~3 chunks of
    ``batch_rows x max(d, K)`` float32 and ``(2*history + 6)`` parameter vectors of K*(d+1) floats.
    ImageNet (1.28M x 768, K=1000): 2.0 GB for float16 features (3.9 GB float32), ~0.8 GB of chunk
    buffers and ~80 MB of L-BFGS state. float32/float64 CPU input that is already contiguous is used
    in place (no copy).

    Attributes: ``coef_`` (K, d) or (1, d) for binary, ``intercept_``, ``classes_``, ``n_iter_`` (int,
    float64 finishing iterations included; ``n_iter_float64_`` of them), ``n_evals_``, ``objective_``
    (mean-scaled F at the solution), ``converged_``, ``stop_reason_``, ``residual_`` (the stopping
    measure at the solution), ``fit_time_``.
    """

    def __init__(
        self,
        C: float = 1.0,
        solver: str = "torch",
        max_iter: int = 1000,
        tol: float | None = None,
        device: str | torch.device | None = None,
        multilabel: bool = False,
        dtype: str = "float32",
        batch_rows: int | None = None,
        history: int = 10,
        warm_start: bool = False,
        center: bool = True,
        precondition: bool = True,
        n_threads: int | None = None,
        criterion: str = "relative",
    ) -> None:
        self.C = C
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.multilabel = multilabel
        self.dtype = dtype
        self.batch_rows = batch_rows
        self.history = history
        self.warm_start = warm_start
        self.center = center
        self.precondition = precondition
        self.n_threads = n_threads
        self.criterion = criterion

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters (sklearn convention), e.g. to clone the probe at another C."""
        return {name: getattr(self, name) for name in _PARAM_NAMES}

    def set_params(self, **params) -> LogisticRegressionProbe:
        for name, value in params.items():
            if name not in _PARAM_NAMES:
                raise ClipBenchError(f"LogisticRegressionProbe has no parameter {name!r}")
            setattr(self, name, value)
        return self

    def clone(self, **params) -> LogisticRegressionProbe:
        """An unfitted copy with the same parameters, some overridden (``probe.clone(C=10.0)``)."""
        return type(self)(**{**self.get_params(), **params})

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        X: np.ndarray | torch.Tensor,
        y: np.ndarray,
        coef_init: np.ndarray | None = None,
        intercept_init: np.ndarray | None = None,
        init_classes: np.ndarray | None = None,
        lbfgs_memory: LbfgsMemory | None = None,
    ) -> LogisticRegressionProbe:
        """Fit on features X (N, d) and labels y (N,) or multi-hot y (N, K) when ``multilabel``.

        ``coef_init``/``intercept_init`` start the optimiser from given coefficients (a C sweep passes
        the neighbouring C's solution); shapes as ``coef_``/``intercept_``. ``init_classes`` names the
        classes of their rows when they come from a fit on other data (e.g. a validation-split fit
        that lacked some classes): rows are matched by class, a class the start does not know starts
        at zero. A start that cannot be matched (other feature width, binary against multiclass) is
        ignored: the fit starts from zero, which changes the iterations, not the solution.
        ``lbfgs_memory`` (torch solver; a previous fit's ``lbfgs_memory_`` on the same features) seeds
        L-BFGS's curvature pairs: fewer iterations along a C path, same stopping test and solution;
        ignored if it belongs to other features or another layout."""
        if not isinstance(X, (np.ndarray, torch.Tensor, RowView)):
            X = np.asarray(X)
        previous = (self.coef_, self.intercept_, self.classes_) if self.warm_start and hasattr(self, "coef_") else None
        if lbfgs_memory is None and previous is not None:
            lbfgs_memory = getattr(self, "lbfgs_memory_", None)
        if self.solver not in SOLVERS:
            raise ClipBenchError(f"unknown probe solver {self.solver!r}; choose one of {', '.join(SOLVERS)}")
        if self.criterion not in CRITERIA:
            raise ClipBenchError(f"unknown stopping criterion {self.criterion!r}; choose one of {', '.join(CRITERIA)}")
        if not (self.C > 0):
            raise ClipBenchError(f"C must be positive, got {self.C}")
        y = np.asarray(y)
        if X.shape[0] != y.shape[0]:
            raise ClipBenchError(f"features have {X.shape[0]} rows but labels have {y.shape[0]}")
        if self.multilabel:
            if y.ndim != 2:
                raise ClipBenchError("multilabel=True needs a multi-hot label matrix of shape (N, K)")
            self.classes_ = np.arange(y.shape[1])
            if not np.isin(y, (0, 1)).all():
                raise ClipBenchError(
                    "multilabel targets must be 0 or 1; map 'ignore' entries (-1, VOC's difficult objects) to 0 "
                    "before fitting (run_linear_probe does) and let the metric skip them"
                )
            constant = np.flatnonzero(y.min(0) == y.max(0))
            if constant.size:
                raise ClipBenchError(
                    f"multilabel column(s) {constant.tolist()[:10]} have a single value in the training set; "
                    "a one-vs-rest logistic model needs positives and negatives for every class"
                )
        else:
            if y.ndim != 1:
                raise ClipBenchError(f"labels must be 1-D for single-label probes, got shape {y.shape}")
            self.classes_ = np.unique(y)
            if self.classes_.size < 2:
                raise ClipBenchError(f"the probe needs at least 2 classes in the training set, got {self.classes_}")
        if coef_init is None and previous is not None:
            coef_init, intercept_init, init_classes = previous
        if coef_init is not None:
            coef_init, intercept_init = self._match_start(coef_init, intercept_init, init_classes, X.shape[1])
        t0 = time.perf_counter()
        with _limit_threads(self.n_threads):
            if self.solver == "sklearn":
                self._fit_sklearn(X, y, coef_init, intercept_init)
            else:
                self._fit_torch(X, y, coef_init, intercept_init, lbfgs_memory)
        self.fit_time_ = time.perf_counter() - t0
        return self

    def _match_start(self, coef, intercept, init_classes, d: int):
        """(coef, intercept) laid out for this fit's classes, or (None, None) if that is impossible."""
        coef = np.asarray(coef)
        k = self._n_outputs()
        intercept = np.zeros(coef.shape[0], dtype=coef.dtype) if intercept is None else np.asarray(intercept)
        if init_classes is not None and not self.multilabel and k > 1:
            init_classes = np.asarray(init_classes)
            if coef.shape != (len(init_classes), d) or len(init_classes) < 3:
                return None, None
            W = np.zeros((k, d), dtype=coef.dtype)
            b = np.zeros(k, dtype=coef.dtype)
            src = {c: i for i, c in enumerate(init_classes.tolist())}
            for j, c in enumerate(self.classes_.tolist()):
                if c in src:
                    W[j], b[j] = coef[src[c]], intercept[src[c]]
            return W, b
        if init_classes is not None and len(init_classes) != len(self.classes_):
            return None, None
        if coef.shape != (k, d) or intercept.shape != (k,):
            raise ClipBenchError(
                f"coef_init has shape {coef.shape} and intercept_init {intercept.shape}, but this fit needs "
                f"({k}, {d}) and ({k},); pass init_classes to match rows by class"
            )
        return coef, intercept

    def _tol(self) -> float:
        return DEFAULT_TOL[self.criterion] if self.tol is None else float(self.tol)

    def _measure(self, prob: _Problem):
        if self.criterion == "relative":
            return prob.kkt_ratio
        return lambda theta, g: prob.raw_grad_maxabs(g)

    def _lbfgs(self, prob: _Problem, theta0: torch.Tensor, max_iter: int, memory=None) -> LbfgsResult:
        # stall detection only (convergence is decided by the measure): f no longer decreases
        ftol = 64 * float(torch.finfo(prob.dtype).eps) * (1e-3 if prob.dtype == torch.float32 else 1.0)
        return lbfgs(
            prob.loss_grad, theta0, max_iter=max_iter, gtol=self._tol(), ftol=ftol, history=self.history,
            measure=self._measure(prob), precond=_spectral_precond(prob) if self.precondition else None,
            # float64 only: a float32 stall is finished in float64 instead (see _fit_torch)
            flat_tol=1e3 * float(torch.finfo(torch.float64).eps) if prob.dtype == torch.float64 else None,
            memory=memory,
        )

    def _n_outputs(self) -> int:
        return len(self.classes_) if (self.multilabel or len(self.classes_) > 2) else 1

    def _fit_torch(self, X, y, coef_init, intercept_init, memory: LbfgsMemory | None = None) -> None:
        device = _resolve_device(self.device)
        dtype = _torch_dtype(self.dtype)
        n, d = X.shape
        k = self._n_outputs()
        # CPU: chunks that stay in cache (~16 MB of logits+features) beat one huge pass by 2-3x.
        budget = 2**26 if device.type == "cuda" else 2**22
        batch_rows = self.batch_rows or max(256, min(n, budget // max(k, d)))
        Xt = _feature_tensor(X, dtype, device, batch_rows)
        if self.multilabel:
            target, kind = torch.as_tensor(y, dtype=dtype, device=device), "binary"
        elif k == 1:
            target = torch.as_tensor((y == self.classes_[1])[:, None], dtype=dtype, device=device)
            kind = "binary"
        else:
            target = torch.as_tensor(np.searchsorted(self.classes_, y), dtype=torch.int64, device=device)
            kind = "multinomial"
        mu64, spread = _feature_moments(Xt, batch_rows)
        if not self.center:
            mu64 = torch.zeros_like(mu64)
        prob = _Problem(Xt, target, kind, k, 1.0 / (self.C * n), dtype, batch_rows, mu64.to(dtype), spread, mu64)
        W0 = torch.zeros(k, d, dtype=dtype, device=device)
        b0 = torch.zeros(k, dtype=dtype, device=device)
        if coef_init is not None:
            W0.copy_(torch.as_tensor(np.asarray(coef_init).reshape(k, d)))
            if intercept_init is not None:
                b0.copy_(torch.as_tensor(np.asarray(intercept_init).reshape(k)))
        theta0 = prob.to_theta(W0, b0)
        res = self._lbfgs(prob, theta0, self.max_iter, memory.pairs(prob) if memory is not None else None)
        n_iter, n_evals, n_polish = res.n_iter, res.n_evals, 0
        if not res.converged and res.message.startswith(_STALLS) and dtype == torch.float32 and n_iter < self.max_iter:
            # float32 cannot represent W finely enough to go on (the attainable residual is about
            # eps32 x the condition number): finish the same fit in float64 from where it stopped.
            W, b = prob.from_theta(res.theta)
            pairs = ([v.double() for v in res.S], [v.double() for v in res.Y])
            prob = _Problem(Xt, target, kind, k, prob.l2, torch.float64, batch_rows, mu64, spread, mu64)
            res = self._lbfgs(prob, prob.to_theta(W.double(), b.double()), self.max_iter - n_iter, pairs)
            n_iter, n_evals, n_polish = n_iter + res.n_iter, n_evals + res.n_evals, res.n_iter
        W, b = prob.from_theta(res.theta)
        self.coef_ = W.to(dtype).cpu().numpy().copy()
        self.intercept_ = b.to(dtype).cpu().numpy().copy()
        self.n_iter_ = n_iter
        self.n_iter_float64_ = n_polish
        self.n_evals_ = n_evals
        self.objective_ = res.objective
        self.converged_ = res.converged
        self.stop_reason_ = res.message
        self.residual_ = res.residual
        self.lbfgs_memory_ = LbfgsMemory.of(prob, res)

    def _fit_sklearn(self, X, y, coef_init, intercept_init) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        Xn = X.cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
        if Xn.dtype not in (np.float32, np.float64):
            Xn = Xn.astype(np.float32)
        columns = [y[:, j] for j in range(y.shape[1])] if self.multilabel else [y]
        coefs, intercepts, iters, converged = [], [], [], True
        for j, yj in enumerate(columns):
            # The paper's call: every argument but these at sklearn's default.
            lr = LogisticRegression(solver="lbfgs", max_iter=self.max_iter, C=self.C)
            if coef_init is not None:
                lr.set_params(warm_start=True)
                rows = slice(j, j + 1) if self.multilabel else slice(None)
                lr.coef_ = np.asarray(coef_init, dtype=np.float64)[rows]
                lr.intercept_ = (
                    np.zeros(lr.coef_.shape[0]) if intercept_init is None else np.asarray(intercept_init)[rows]
                )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                lr.fit(Xn, yj)
            converged &= not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            coefs.append(lr.coef_)
            intercepts.append(lr.intercept_)
            iters.append(int(np.max(lr.n_iter_)))
        self.coef_ = np.concatenate(coefs, axis=0)
        self.intercept_ = np.concatenate(intercepts, axis=0)
        self.n_iter_ = max(iters)
        self.n_evals_ = None
        self.converged_ = converged
        self.stop_reason_ = "sklearn"
        self.residual_ = math.nan
        self.n_iter_float64_ = 0
        self.objective_ = logistic_objective(Xn, y, self.coef_, self.intercept_, self.C, self.multilabel)

    # ------------------------------------------------------------------ prediction
    def _require_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise ClipBenchError("this LogisticRegressionProbe is not fitted yet; call fit(X, y) first")

    def decision_function(self, X: np.ndarray, batch_rows: int = 65536) -> np.ndarray:
        """Logits: (N, K), or (N,) for a binary single-label model (as sklearn)."""
        self._require_fitted()
        Xn = X.cpu().numpy() if isinstance(X, torch.Tensor) else X
        dt = self.coef_.dtype
        out = np.empty((Xn.shape[0], self.coef_.shape[0]), dtype=dt)
        for i in range(0, Xn.shape[0], batch_rows):
            out[i : i + batch_rows] = np.asarray(Xn[i : i + batch_rows], dtype=dt) @ self.coef_.T + self.intercept_
            if not np.isfinite(out[i : i + batch_rows]).all():  # NaN logits would argmax to class 0: a wrong score
                raise ClipBenchError(_NON_FINITE_FEATURES)
        return out[:, 0] if (self.coef_.shape[0] == 1 and not self.multilabel) else out

    def predict_proba(self, X: np.ndarray, dtype: type = np.float64, batch_rows: int = 4096) -> np.ndarray:
        """Class probabilities (N, K): softmax (multiclass), [1-p, p] (binary), per-class sigmoid
        (multilabel; rows do not sum to 1). Computed in float64 a chunk of rows at a time and stored
        as ``dtype``: the only full-size array is the result (float32 halves it). float32 keeps softmax
        scores' top-k and log-loss, but rounds sigmoid probabilities within 6e-8 of 1 to 1.0 (logits
        above ~17): ties for ROC AUC / mAP and a wrong multi-label log-loss, so use it for softmax only."""
        return self._from_logits(X, self._proba64, dtype, batch_rows)

    def predict_log_proba(self, X: np.ndarray, dtype: type = np.float64, batch_rows: int = 4096) -> np.ndarray:
        """Log class probabilities, laid out as :meth:`predict_proba`, computed from the logits in
        float64 a chunk of rows at a time: log-softmax, or log-sigmoid of z and of -z. They rank exactly
        as the logits do, where probabilities round to 1.0 (sigmoid logits above ~37 in float64) or
        underflow to 0.0 (softmax classes ~100 logits below the top in float32): ROC AUC, mAP and top-k
        see no ties the model did not make. The binary margin (column 1 - column 0) is the logit."""
        return self._from_logits(X, self.log_proba_from_logits, dtype, batch_rows)

    def _from_logits(self, X: np.ndarray, transform, dtype: type, batch_rows: int) -> np.ndarray:
        """``transform`` of the logits, a chunk of rows at a time, into one (N, K) array of ``dtype``
        (binary single-label: two columns, for class 0 and class 1)."""
        self._require_fitted()
        binary = self.coef_.shape[0] == 1 and not self.multilabel
        out = np.empty((X.shape[0], 2 if binary else self.coef_.shape[0]), dtype=dtype)
        for i in range(0, X.shape[0], batch_rows):
            out[i : i + batch_rows] = transform(self.decision_function(X[i : i + batch_rows]))
        return out

    def log_proba_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """:meth:`predict_log_proba` of already computed logits (:meth:`decision_function`), in float64."""
        Z = logits.astype(np.float64)
        if self.multilabel:
            return -np.logaddexp(0.0, -Z)
        if Z.ndim == 1:
            return np.stack([-np.logaddexp(0.0, Z), -np.logaddexp(0.0, -Z)], axis=1)
        Z -= Z.max(axis=1, keepdims=True)
        Z -= np.log(np.exp(Z).sum(axis=1, keepdims=True))
        return Z

    def _proba64(self, logits: np.ndarray) -> np.ndarray:
        Z = logits.astype(np.float64)
        if self.multilabel or Z.ndim == 1:
            with np.errstate(over="ignore"):  # exp(-z) overflows to inf for z < -709: p = 0, as it should
                p = 1.0 / (1.0 + np.exp(-Z))
            return p if self.multilabel else np.stack([1.0 - p, p], axis=1)
        Z -= Z.max(axis=1, keepdims=True)
        np.exp(Z, out=Z)
        Z /= Z.sum(axis=1, keepdims=True)
        return Z

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Labels (N,), or a multi-hot (N, K) 0/1 matrix (threshold 0.5) when ``multilabel``."""
        Z = self.decision_function(X)
        if self.multilabel:
            return (Z > 0).astype(np.int64)
        if Z.ndim == 1:
            return self.classes_[(Z > 0).astype(np.int64)]
        return self.classes_[Z.argmax(axis=1)]

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean accuracy (fraction), as sklearn's ``score``; exact-match for multilabel."""
        pred = self.predict(X)
        y = np.asarray(y)
        return float(np.mean(np.all(pred == y, axis=1) if self.multilabel else pred == y))

    def __repr__(self) -> str:
        return (
            f"LogisticRegressionProbe(C={self.C:g}, solver={self.solver!r}, max_iter={self.max_iter}, "
            f"tol={self._tol():g}, criterion={self.criterion!r}, multilabel={self.multilabel})"
        )
