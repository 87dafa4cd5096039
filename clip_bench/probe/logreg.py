"""L2-regularised logistic regression on cached features: the paper's probe, fast (the estimator).

The CLIP paper fits ``sklearn.linear_model.LogisticRegression(solver="lbfgs", max_iter=1000, C=C)``
with every other argument at its default. :class:`LogisticRegressionProbe` offers that exact call
(``solver="sklearn"``) and a full-batch L-BFGS in torch (``solver="torch"``) that minimises the *same*
objective, so the two are interchangeable and the torch one can be checked against the reference.
The objective, its gradient, preconditioner and warm starts are in :mod:`clip_bench.probe.objective`
(where F and its scaling are defined); the L-BFGS solver is :mod:`clip_bench.probe.lbfgs`.

Stopping (torch solver, ``criterion="relative"``, the default): converged means the relative
optimality residual (``objective.LogisticProblem.kkt_ratio``) is <= ``tol`` (default 1e-2): the
gradient in W relative to the penalty's gradient ``W / (C n)``, which it must cancel at the optimum,
and the intercept's gradient relative to the spread of the logits. It bounds the distance to the optimum
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
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from clip_bench.probe.lbfgs import STALLS, LbfgsResult, Measure, lbfgs
from clip_bench.probe.objective import (
    NON_FINITE_FEATURES,
    LbfgsMemory,
    LogisticProblem,
    feature_moments,
    logistic_objective,
    spectral_precond,
)
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
def _limit_threads(n_threads: int | None) -> Iterator[None]:
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
    center: optimise in mean-centred coordinates (exact re-parametrisation, see
        ``objective.LogisticProblem``); torch only.
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

    def _measure(self, prob: LogisticProblem) -> Measure:
        if self.criterion == "relative":
            return prob.kkt_ratio
        return lambda theta, g: prob.raw_grad_maxabs(g)

    def _lbfgs(
        self, prob: LogisticProblem, theta0: torch.Tensor, max_iter: int,
        memory: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None,
    ) -> LbfgsResult:
        # stall detection only (convergence is decided by the measure): f no longer decreases
        ftol = 64 * float(torch.finfo(prob.dtype).eps) * (1e-3 if prob.dtype == torch.float32 else 1.0)
        return lbfgs(
            prob.loss_grad, theta0, max_iter=max_iter, gtol=self._tol(), ftol=ftol, history=self.history,
            measure=self._measure(prob), precond=spectral_precond(prob) if self.precondition else None,
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
        mu64, spread = feature_moments(Xt, batch_rows)
        if not self.center:
            mu64 = torch.zeros_like(mu64)
        prob = LogisticProblem(Xt, target, kind, k, 1.0 / (self.C * n), dtype, batch_rows, mu64.to(dtype), spread, mu64)
        W0 = torch.zeros(k, d, dtype=dtype, device=device)
        b0 = torch.zeros(k, dtype=dtype, device=device)
        if coef_init is not None:
            W0.copy_(torch.as_tensor(np.asarray(coef_init).reshape(k, d)))
            if intercept_init is not None:
                b0.copy_(torch.as_tensor(np.asarray(intercept_init).reshape(k)))
        theta0 = prob.to_theta(W0, b0)
        res = self._lbfgs(prob, theta0, self.max_iter, memory.pairs(prob) if memory is not None else None)
        n_iter, n_evals, n_polish = res.n_iter, res.n_evals, 0
        if not res.converged and res.message.startswith(STALLS) and dtype == torch.float32 and n_iter < self.max_iter:
            # float32 cannot represent W finely enough to go on (the attainable residual is about
            # eps32 x the condition number): finish the same fit in float64 from where it stopped.
            W, b = prob.from_theta(res.theta)
            pairs = ([v.double() for v in res.S], [v.double() for v in res.Y])
            prob = LogisticProblem(Xt, target, kind, k, prob.l2, torch.float64, batch_rows, mu64, spread, mu64)
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
                raise ClipBenchError(NON_FINITE_FEATURES)
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
