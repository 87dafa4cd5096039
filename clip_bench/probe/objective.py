"""The probe's L2-regularised logistic-regression objective: its value, gradient, preconditioner and warm starts.

The objective (scikit-learn 1.9 scaling, ``_logistic.py`` / ``_linear_loss.py``)::

    F(W, b) = (1/n) * sum_i CE(x_i W^T + b, y_i) + 1/(2 C n) * ||W||^2        (intercept not penalised)

i.e. the textbook ``sum_i CE + ||W||^2 / (2C)`` divided by n: the same minimiser, and the value
``objective_`` reported by the probe is always this mean-scaled F (multiply by n for the sum form).
``CE`` is the softmax cross-entropy for three or more classes (sklearn's multinomial model, one weight
row per class), the binary log-loss with a *single* logit for two classes (sklearn's binary model:
``coef_`` has shape (1, d), ``predict_proba`` is ``[1 - p, p]``), and, with ``multilabel=True``, a sum
of independent binary problems, one per column of a multi-hot target (one-vs-rest, as VOC2007 mAP
needs).

:class:`LogisticProblem` evaluates F and its gradient on the device (``loss_grad``, for
:func:`clip_bench.probe.lbfgs.lbfgs`) and the relative optimality residual (``kkt_ratio``) the probe
stops on; :func:`spectral_precond` is the feature-covariance preconditioner; :func:`logistic_objective`
is F in float64 NumPy for any coefficients.

Along a C path (the sweep) two things make the fits cheaper without touching what they converge to:
``path_start`` starts each fit linearly in log C through two fitted neighbours (interpolation between
the nearest fitted C on either side, else extrapolation), and ``lbfgs_memory`` (an :class:`LbfgsMemory`)
hands the previous fit's L-BFGS curvature pairs to the next one (the penalty's part of each pair is
re-computed at the new C, so only the data curvature is carried over). On the benchmark data they cut
the loss evaluations of a sweep by about 2.5x. An interpolated start can already pass the relative
test: the fit then takes 0 iterations, and that is still the bound ``||W - W*|| <= tol ||W||`` at
*this* C (the old absolute test, by contrast, passed at the neighbour's solution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from clip_bench.probe.lbfgs import LbfgsResult, Precond
from clip_bench.util.errors import ClipBenchError


@dataclass
class LogisticProblem:
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


# one entry: the last feature sample's covariance eigendecomposition
_EIG_CACHE: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def _covariance_eig(prob: LogisticProblem, min_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def spectral_precond(prob: LogisticProblem, min_rows: int = 4096) -> Precond:
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


def feature_moments(X: torch.Tensor, batch_rows: int) -> tuple[torch.Tensor, float]:
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
        raise ClipBenchError(NON_FINITE_FEATURES)
    var = sq / X.shape[0] / X.shape[1]
    return mu, math.sqrt(var) if var > 0 else 1.0


NON_FINITE_FEATURES = ("the probe's features contain NaN or inf values (or values too large to square in float32); "
                        "a damaged feature cache: delete it and re-extract (or --no-cache)")


@dataclass
class LbfgsMemory:
    """L-BFGS curvature pairs of a finished fit, kept to seed the next fit on the same features (a C
    sweep): steps ``S`` and the *data* part of the gradient changes ``Yd`` (the penalty's part,
    ``l2 * s`` on W, is re-added at the new C, so the pairs are exact for the change of C), in the
    centred coordinates of ``mu``. Only steers the optimiser: the stopping test, hence the solution,
    does not depend on it."""

    S: list[torch.Tensor]
    Yd: list[torch.Tensor]
    mu: torch.Tensor  # float64 mean feature the coordinates are centred on
    shape: tuple[int, int]  # (outputs, features)
    kind: str
    l2: float  # the penalty weight 1 / (C n) of the fit they come from

    # Pairs from a C further away than this are not used. Measured on the benchmark data: from a
    # path_start (log-C extrapolated) start they save iterations even across the sweep's 100x coarse
    # steps (about 20% fewer loss evaluations over a sweep); from the bare neighbour's solution, a
    # 100x step took ~15% more iterations with them.
    MAX_C_RATIO = 1e3

    def pairs(self, prob: LogisticProblem) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
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
    def of(cls, prob: LogisticProblem, res: LbfgsResult) -> LbfgsMemory:
        """The curvature pairs of ``res``, a finished :func:`~clip_bench.probe.lbfgs.lbfgs` run on ``prob``."""
        kd = prob.n_outputs * prob.d
        Yd = []
        for s, y in zip(res.S or [], res.Y or [], strict=True):
            yd = y.clone()
            yd[:kd].sub_(s[:kd], alpha=prob.l2)
            Yd.append(yd.to(torch.float32))
        return cls([s.to(torch.float32) for s in res.S or []], Yd, prob.mu64.cpu(), (prob.n_outputs, prob.d), prob.kind,
                   prob.l2)


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
