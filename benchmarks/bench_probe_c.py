"""Benchmark: does clip-bench's C choice work? Chosen C against the oracle C and a fixed C = 1.

Two feature sets from the built-in tiny CLIP (``tiny-clip-digits``, 64-d image embeddings):

* ``digits``: the ``digits`` task's images (train 1,078 / val 359 / test 360).
* ``noisy-digits``: the same images with heavy Gaussian pixel noise (sigma 60 of 255) and one random
  10 x 10 occluding block of random grey per image (seeded), on which zero-shot falls to ~65%.

For each set, k in {1, 2, 4, 8, 16} and each seed, the k shots per class are drawn from train
(``sample_k_shot``) and three test accuracies are measured on the same shots:

* **chosen**: clip-bench's pick. k >= 2: the search of ``clip_bench.probe.c_search`` with the few-shot prior
  (``fewshot.prior_C``) on the within-shot CV scores, the pick scaled by n_cv / n (``transfer_C``),
  i.e. the functions ``run_fewshot`` calls; the CV scores are computed here at all 97 C once, so that
  other rules can be replayed on them (every fit is converged, so they do not depend on the search
  path). k = 1: the prior C of the shots (``one_shot_C``). Then one fit on the shots at that C;
* **oracle**: the best test accuracy over all 97 grid C (an upper bound no method can reach without
  peeking at test);
* **C = 1**: a fixed C.

It also reports where the picks land (the share at the grid floor 1e-6 and the ceiling 1e6), and what
two earlier rules pick on the same CV scores: ties within one SE to the lowest CV log-loss (no prior,
no transfer), and the original search (exact ties to the smallest C, refinement around it only); at
k = 1 the earlier rule C = 1 / mean squared spread.

The full linear probe is measured the same way over several validation seeds: train + val pooled,
a seeded stratified 20 % held out for the C search (``run_linear_probe``), refit on the pool, test;
the held-out split's scores at all 97 C are logged too.

``--log FILE`` appends each configuration's measurement (test curve, CV table) as it finishes and
reads back whatever is already in the file instead of refitting it: a run resumes where it stopped,
can be split over processes (``--shots``, ``--seed-from``, ``--sets``; concatenate the logs), and the
rules are re-applied to logged tables in seconds (``--prior-scale`` for the prior's sensitivity).

    PYTHONPATH=. python benchmarks/bench_probe_c.py --linear-seeds 10 --log runs.jsonl --json out.json
    PYTHONPATH=. python benchmarks/bench_probe_c.py --seeds 3 --sets digits --json out.json

Results: benchmarks/RESULTS.md ("Choosing C").
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import platform
import time
from collections import defaultdict

import numpy as np
import torch

from clip_bench.cache.extract import extract
from clip_bench.config import ExtractConfig
from clip_bench.loaders.base import ArrayImages
from clip_bench.loaders.digits import digits_arrays
from clip_bench.metrics.classification import top1
from clip_bench.models.resolve import load_model
from clip_bench.probe import PROBE_RULE, ProbeConfig, one_shot_C, run_linear_probe, sample_k_shot, shot_folds
from clip_bench.probe.c_search import (
    COARSE_STEP,
    grid_edge,
    grid_position,
    log_loss,
    paired_band,
    parametric_search,
    proportion_se,
)
from clip_bench.probe.fewshot import cv_train_size, prior_C, transfer_C
from clip_bench.probe.protocol import stratified_holdout
from clip_bench.protocols.zeroshot_head import build_classifier, zeroshot_logits
from clip_bench.tasks.catalog import get_task

SHOTS = (1, 2, 4, 8, 16)
TEST_DRAWS = 5
NOISE_SIGMA, OCCLUDER = 60.0, 10


def corrupt(images: np.ndarray, seed: int) -> np.ndarray:
    """Heavy Gaussian pixel noise plus one random occluding block of random grey per image."""
    rng = np.random.default_rng(seed)
    x = images.astype(np.float32) + rng.normal(0.0, NOISE_SIGMA, images.shape)
    n, h, w = images.shape
    for i in range(n):
        r, c = rng.integers(0, h - OCCLUDER + 1), rng.integers(0, w - OCCLUDER + 1)
        x[i, r : r + OCCLUDER, c : c + OCCLUDER] = rng.uniform(0, 255)
    return np.clip(x, 0, 255).round().astype(np.uint8)


def feature_sets(names: list[str], test_draws: int = 1) -> dict[str, dict]:
    """{set: {split: (features, labels)}, zero-shot test accuracy} from the tiny CLIP. ``noisy-digits``'s
    test split is the 360 test images corrupted ``test_draws`` times (draw 0 is the original noisy test
    set; ``n_first`` rows), so that its test accuracies, and the oracle's max over 97 of them, are less
    noisy. Train and val are corrupted once."""
    lm = load_model("tiny-clip-digits", device="cpu")
    zs_head = build_classifier(lm, get_task("digits").prompt_set())

    def features(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        f = extract(lm, ArrayImages(images, labels), np.arange(len(labels)), None,
                    cfg=ExtractConfig(quiet=True, workers=0)).features
        return np.asarray(f, dtype=np.float32)

    out = {}
    for name in names:
        if name == "synthetic":
            out[name] = synthetic_set()
            continue
        data: dict = {"test_draws": test_draws if name == "noisy-digits" else 1}
        for s, split in enumerate(("train", "val", "test")):
            images, labels = digits_arrays(split)
            if name != "noisy-digits":
                data[split] = (features(images, labels), labels)
                continue
            draws = data["test_draws"] if split == "test" else 1
            # draw 0 keeps the seed of the original set (100 + split); later draws 1000 apart
            xs = [features(corrupt(images, seed=100 + s + 1000 * d), labels) for d in range(draws)]
            data[split] = (np.concatenate(xs), np.tile(labels, draws))
        data["n_first"] = len(digits_arrays("test")[1])
        test_X, test_y = data["test"]
        n = data["n_first"]
        data["zeroshot"] = top1(zeroshot_logits(test_X, zs_head), test_y)
        data["zeroshot_first"] = top1(zeroshot_logits(test_X[:n], zs_head), test_y[:n])
        out[name] = data
    return out


def grid_fits(cfg: ProbeConfig, X, y):
    """(index, fit) at every grid C along one warm-started path; each fit converged, so what is scored
    on it does not depend on the path."""
    probe = cfg.make_probe()
    init: dict = {}
    for i, C in enumerate(cfg.grid()):
        fit = probe.clone(C=float(C)).fit(X, y, **init)
        init = {"coef_init": fit.coef_, "intercept_init": fit.intercept_, "init_classes": fit.classes_}
        yield i, fit


def synthetic_set() -> dict:
    """Wider features and more classes than the tiny CLIP's: bench_probe.py's synthetic CLIP-like
    features (512-d, 100 classes, anisotropic noise and a common offset; class separation 0.4, where
    C = 1 gives ~12 % at k = 1 and ~96 % at k = 16; seed 0), train 5,000 (the
    shots are drawn from it) / val 1,000 / test 10,000. No zero-shot head."""
    from bench_probe import clip_like_features  # the sibling benchmark (benchmarks/ is on sys.path)

    data: dict = clip_like_features(5000, 1000, 10000, 512, 100, seed=0, separation=0.4, decay=1.0)
    data.update(test_draws=1, n_first=len(data["test"][1]), zeroshot=None, zeroshot_first=None)
    return data


def path_scores(cfg: ProbeConfig, X, y, vX, vy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy (%), mean log-loss and which examples are right (97 x len(vy)) on (vX, vy) at every grid C."""
    acc, ll = np.empty(len(cfg.grid())), np.empty(len(cfg.grid()))
    hits = np.empty((len(cfg.grid()), len(vy)), dtype=bool)
    for i, fit in grid_fits(cfg, X, y):
        log_proba = fit.predict_log_proba(vX)
        hits[i] = fit.classes_[log_proba.argmax(1)] == vy
        acc[i] = 100.0 * float(np.mean(hits[i]))
        ll[i] = log_loss(log_proba, vy, fit.classes_, False)
    return acc, ll, hits


def pack_hits(hits: np.ndarray) -> str:
    """A (97, n) boolean table as base64 of its packed bits (for the JSON log)."""
    return base64.b64encode(np.packbits(hits, axis=1).tobytes()).decode()


def unpack_hits(run: dict) -> np.ndarray:
    """The (97, n_val) table of which validation predictions were right at each grid C (``pack_hits``)."""
    n = run["n_val"]
    packed = np.frombuffer(base64.b64decode(run["cv_hits"]), dtype=np.uint8).reshape(-1, (n + 7) // 8)
    return np.unpackbits(packed, axis=1, count=n).astype(bool)


def hit_weights(run: dict) -> np.ndarray:
    """Each validation prediction's share of the CV score (%): the score is the mean over folds of
    each fold's accuracy, so a prediction of fold f weighs 100 / (n_folds * |fold f|)."""
    sizes = run.get("cv_fold_sizes") or [run["n_val"]]
    return np.concatenate([np.full(n, 100.0 / (len(sizes) * n)) for n in sizes])


def test_curves(cfg: ProbeConfig, X, y, test_X, test_y, n_first: int) -> tuple[np.ndarray, np.ndarray]:
    """Test accuracy at every grid C: on the whole test split, and on its first ``n_first`` rows (the
    first draw)."""
    whole, first = np.empty(len(cfg.grid())), np.empty(len(cfg.grid()))
    for i, fit in grid_fits(cfg, X, y):
        right = fit.predict(test_X) == test_y
        whole[i], first[i] = 100.0 * right.mean(), 100.0 * right[:n_first].mean()
    return whole, first


def curve_summary(curve: np.ndarray, grid: np.ndarray, suffix: str = "") -> dict:
    """The oracle (best test accuracy over the grid), where it is, and the test accuracy at C = 1."""
    return {f"oracle{suffix}": float(curve.max()), f"C_oracle{suffix}": float(grid[int(curve.argmax())]),
            f"C1{suffix}": float(curve[np.argmin(np.abs(grid - 1.0))]), f"test_curve{suffix}": curve.tolist()}


def previous_rule(acc: np.ndarray, coarse_step: int = COARSE_STEP) -> int:
    """The original search: ties to the smallest C, halving around that point only."""
    seen = {i: acc[i] for i in range(0, len(acc), coarse_step)}

    def best() -> int:
        return max(sorted(seen), key=lambda i: (seen[i], -i))

    step = coarse_step // 2
    while step >= 1:
        b = best()
        for j in (b - step, b + step):
            if 0 <= j < len(acc):
                seen[j] = acc[j]
        step //= 2
    return best()


def search_rule(cfg: ProbeConfig, acc: np.ndarray, ll: np.ndarray, prior: float | None, *,
                shares: np.ndarray | None = None, n_val: int | None = None, tie_se: float | None = None,
                record: dict | None = None) -> tuple[int, int]:
    """clip-bench's search (clip_bench.probe.c_search) on a table of scores: (pick, number of C evaluated). ``prior``:
    the prior C (None: ties to the lowest log-loss). ``shares`` (97 x n_val, each validation
    prediction's share of the score where it is right): ties within ``paired_band`` (``cfg.tie_se``), as
    ``sweep_C_folds`` with a metric that has per-example shares; else ``n_val``: within ``cfg.tie_se``
    unpaired SEs of the best score (the rule before the paired band). ``tie_se`` overrides ``cfg.tie_se``;
    ``record`` receives ``prior_refuted`` (``parametric_search``)."""
    width = cfg.tie_se if tie_se is None else tie_se

    def band(top: int, i: int) -> float:
        if shares is not None:
            return paired_band(shares[top], shares[i], width)
        return width * proportion_se(acc[top], n_val)

    best, scores, _, _ = parametric_search(lambda i: (acc[i], ll[i]), len(acc), cfg.coarse_step, cfg.max_tied,
                                           band=band, prior=grid_position(prior, cfg.grid()), record=record)
    return best, len(scores)


def run_shares(run: dict) -> np.ndarray:
    """(97, n_val): each validation prediction's share of the CV score at each grid C (0 where wrong)."""
    return unpack_hits(run) * hit_weights(run)


def fit_score(cfg: ProbeConfig, C: float, X, y, test_X, test_y, n_first: int) -> tuple[float, float]:
    """Test accuracy of one fit at C: on the whole test split and on its first draw."""
    right = cfg.make_probe().clone(C=float(C)).fit(X, y).predict(test_X) == test_y
    return 100.0 * float(right.mean()), 100.0 * float(right[:n_first].mean())


def measure_fewshot(cfg: ProbeConfig, X, y, k: int, test_X, test_y, n_first: int, logged: dict | None = None) -> dict:
    """The rule-independent part of a run (resumable from --log): the test curves at all 97 C and, for
    k >= 2, the within-shot CV table at all 97 C (every fit converged, so a search sees the same scores).
    ``logged``: a run logged before the CV tables kept per-example hits; its test curves are kept."""
    grid = cfg.grid()
    if logged is not None and "test_curve_first" in logged:
        run = {key: v for key, v in logged.items() if key.startswith(("oracle", "C_oracle", "C1", "test_curve"))}
    else:
        whole, first = test_curves(cfg, X, y, test_X, test_y, n_first)
        run = {**curve_summary(whole, grid), **curve_summary(first, grid, "_first")}
    if k >= 2:
        folds = shot_folds(y, k, cfg.cv_max_folds)
        tables = [path_scores(cfg, X[tr], y[tr], X[va], y[va]) for tr, va in folds]
        run.update(cv_acc=np.mean([t[0] for t in tables], axis=0).tolist(),
                   cv_ll=np.mean([t[1] for t in tables], axis=0).tolist(), n_val=sum(len(va) for _, va in folds),
                   cv_fold_sizes=[len(va) for _, va in folds],
                   cv_hits=pack_hits(np.concatenate([t[2] for t in tables], axis=1)))
    return run


def apply_rules(cfg: ProbeConfig, run: dict, X, y, k: int, test_X, test_y, n_first: int) -> dict:
    """clip-bench's pick on a measured run (the same functions ``run_fewshot`` calls), refitted on the
    shots at the picked C and scored on test; plus the two earlier rules on the same scores."""
    grid, curve = cfg.grid(), np.asarray(run["test_curve"])
    if k == 1:
        C = one_shot_C(X, cfg.prior_scale)
        C_old = prior_C(X, n=1, scale=1.0)  # the k = 1 rule before the prior: C = 1 / mean squared spread
        chosen, chosen_first = fit_score(cfg, C, X, y, test_X, test_y, n_first)
        return {**run, "C": C, "chosen": chosen, "chosen_first": chosen_first, "edge": None, "n_fits": 1,
                "C_old_k1": C_old, "old_k1": fit_score(cfg, C_old, X, y, test_X, test_y, n_first)[0]}
    acc, ll = np.asarray(run["cv_acc"]), np.asarray(run["cv_ll"])
    folds = shot_folds(y, k, cfg.cv_max_folds)
    n_cv = cv_train_size(folds)
    prior = prior_C(X, n_cv, cfg.prior_scale)
    searched: dict = {}
    i, n_c = search_rule(cfg, acc, ll, prior, shares=run_shares(run), record=searched)
    C = transfer_C(grid[i], n_cv, len(y))
    j_unpaired, _ = search_rule(cfg, acc, ll, prior, n_val=run["n_val"], tie_se=1.0)
    C_unpaired = transfer_C(grid[j_unpaired], n_cv, len(y))
    j_ll, _ = search_rule(cfg, acc, ll, None, n_val=run["n_val"], tie_se=1.0)
    j_old = previous_rule(acc)
    chosen, chosen_first = fit_score(cfg, C, X, y, test_X, test_y, n_first)
    return {**run, "C": C, "C_cv": float(grid[i]), "chosen": chosen, "chosen_first": chosen_first,
            "edge": grid_edge(i, len(grid)), "n_fits": n_c * len(folds), "prior_refuted": searched["prior_refuted"],
            "unpaired": fit_score(cfg, C_unpaired, X, y, test_X, test_y, n_first)[0], "C_unpaired": C_unpaired,
            "ll_rule": float(curve[j_ll]), "C_ll_rule": float(grid[j_ll]), "ll_rule_edge": grid_edge(j_ll, len(grid)),
            "previous": float(curve[j_old]), "C_previous": float(grid[j_old])}


def fewshot_runs(cfg: ProbeConfig, data: dict, seeds: range, shots: tuple[int, ...], log, done: dict) -> list[dict]:
    """Per (k, seed): the measured tables (or those read back from --log) and the rules applied to them.
    k = 1 uses the fixed rule (``fewshot.one_shot_C``)."""
    (train_X, train_y), (test_X, test_y), n_first = data["train"], data["test"], data["n_first"]
    runs = []
    for k in shots:
        for seed in seeds:
            t0 = time.perf_counter()
            idx = sample_k_shot(train_y, k, seed)
            X, y = train_X[idx], train_y[idx]
            measured = done.get((k, seed))
            if measured is None or (k >= 2 and "cv_hits" not in measured):  # (logs before the paired band)
                measured = {"k": k, "seed": seed, "test_draws": data["test_draws"],
                            **measure_fewshot(cfg, X, y, k, test_X, test_y, n_first, measured)}
                log(measured)
            run = apply_rules(cfg, measured, X, y, k, test_X, test_y, n_first)
            runs.append(run)
            print(f"  k={k:2d} seed={seed}: chosen C={run['C']:.3g} test {run['chosen']:.2f} | oracle "
                  f"{run['oracle']:.2f} (C={run['C_oracle']:.3g}) | C=1 {run['C1']:.2f}"
                  + (f" | unpaired band C={run['C_unpaired']:.3g} {run['unpaired']:.2f}" if "unpaired" in run else "")
                  + (f" | log-loss rule C={run['C_ll_rule']:.3g} {run['ll_rule']:.2f}" if "ll_rule" in run else "")
                  + f" [{time.perf_counter() - t0:.0f} s]", flush=True)
    return runs


def linear_runs(cfg: ProbeConfig, data: dict, seeds: int, log, done: dict) -> list[dict]:
    """The full probe per validation seed: ``run_linear_probe`` (clip-bench's pick), and the held-out
    split's scores at all 97 C (logged, so rules can be replayed). A logged run whose pick was made
    by another ``PROBE_RULE`` keeps its tables and re-runs the probe only."""
    pool_X = np.concatenate([data["train"][0], data["val"][0]])
    pool_y = np.concatenate([data["train"][1], data["val"][1]])
    (test_X, test_y), n_first = data["test"], data["n_first"]
    grid = cfg.grid()
    runs, curves = [], None
    for seed in range(seeds):
        run = done.get(("linear", seed))
        if (run is not None and "cv_hits" in run and run.get("probe_rule") == PROBE_RULE
                and run.get("tie_se") == cfg.tie_se):
            runs.append(run)
            continue
        if run is None or "cv_hits" not in run:
            if curves is None:  # the refit set is the same for every seed
                curves = test_curves(cfg, pool_X, pool_y, test_X, test_y, n_first)
            tr, va = stratified_holdout(pool_y, cfg.val_fraction, seed)
            val_acc, val_ll, val_hits = path_scores(cfg, pool_X[tr], pool_y[tr], pool_X[va], pool_y[va])
            run = {"seed": seed, "test_draws": data["test_draws"], **curve_summary(curves[0], grid),
                   **curve_summary(curves[1], grid, "_first"), "cv_acc": val_acc.tolist(), "cv_ll": val_ll.tolist(),
                   "n_val": int(va.size), "cv_hits": pack_hits(val_hits)}

        @functools.wraps(top1)  # with its per_example shares: the task metric's C rule (the paired band)
        def scored(scores: np.ndarray, targets: np.ndarray) -> float:
            scored.last = scores  # the last call scores the test split
            return top1(scores, targets)

        res = run_linear_probe(pool_X, pool_y, None, None, test_X, test_y, scored, seed=seed, config=cfg)
        first = top1(scored.last[:n_first], test_y[:n_first])  # the same fit, on the first draw only
        run.update({"C": res["C"], "chosen": res["test_score"], "chosen_first": first, "edge": res["C_at_grid_edge"],
                    "n_fits": res["sweep_n_fits"], "converged": res["sweep_converged"] and res["converged"],
                    "probe_rule": PROBE_RULE, "tie_se": cfg.tie_se})
        runs.append(run)
        log({"linear": True, **run})
    for r in runs:
        # the rule before the paired band, replayed on the logged table (the refit at a grid C is on the test curve)
        j, _ = search_rule(cfg, np.asarray(r["cv_acc"]), np.asarray(r["cv_ll"]), None, n_val=r["n_val"], tie_se=1.0)
        r.update(unpaired=r["test_curve"][j], C_unpaired=float(grid[j]))
        print(f"  linear seed={r['seed']}: chosen C={r['C']:.3g} test {r['chosen']:.2f} | oracle {r['oracle']:.2f} "
              f"(C={r['C_oracle']:.3g}) | C=1 {r['C1']:.2f} | {r['n_fits']} fits", flush=True)
    return runs


def summarise(runs: list[dict]) -> dict:
    def mean(key):
        vals = [r[key] for r in runs if key in r]
        return float(np.mean(vals)) if vals else None

    gaps = [r["oracle"] - r["chosen"] for r in runs]
    out = {
        "n": len(runs), "chosen": mean("chosen"), "oracle": mean("oracle"), "C1": mean("C1"),
        "gap_mean": float(np.mean(gaps)), "gap_max": float(np.max(gaps)),
        "gap_first_mean": (float(np.mean([r["oracle_first"] - r["chosen_first"] for r in runs]))
                           if all("chosen_first" in r for r in runs) else None),
        "floor_share": float(np.mean([r["edge"] == "low" for r in runs])),
        "ceiling_share": float(np.mean([r["edge"] == "high" for r in runs])),
        "median_C": float(np.median([r["C"] for r in runs])),
        "fits_mean": float(np.mean([r["n_fits"] for r in runs])),
        "refuted": (sum(bool(r["prior_refuted"]) for r in runs)
                    if all(r.get("prior_refuted") is not None for r in runs) else None),
        "all_converged": all(r.get("converged", True) in (True, None) for r in runs),
    }
    if all("unpaired" in r for r in runs):
        out["unpaired"] = mean("unpaired")
        out["unpaired_gap"] = float(np.mean([r["oracle"] - r["unpaired"] for r in runs]))
    if any("previous" in r for r in runs):
        prev = [r for r in runs if "previous" in r]
        out["previous"] = mean("previous")
        out["previous_floor_share"] = float(np.mean([r["C_previous"] <= 1e-6 * 1.0001 for r in prev]))
        out["ll_rule"] = mean("ll_rule")
        out["ll_rule_gap"] = float(np.mean([r["oracle"] - r["ll_rule"] for r in prev]))
        out["ll_rule_edge_share"] = float(np.mean([r["ll_rule_edge"] is not None for r in prev]))
    if any("old_k1" in r for r in runs):
        out["old_k1"] = mean("old_k1")
        out["old_k1_gap"] = float(np.mean([r["oracle"] - r["old_k1"] for r in runs]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="digits,noisy-digits",
                    help="digits, noisy-digits, synthetic (512-d, 100 classes; not in the default run)")
    ap.add_argument("--seeds", type=int, default=10, help="few-shot seeds per k")
    ap.add_argument("--seed-from", type=int, default=0, help="first few-shot seed (to split a run over processes)")
    ap.add_argument("--shots", default=",".join(map(str, SHOTS)))
    ap.add_argument("--linear-seeds", type=int, default=5, help="validation seeds of the full linear probe")
    ap.add_argument("--prior-scale", type=float, default=ProbeConfig.prior_scale,
                    help="few-shot prior C = SCALE / (n s^2) (sensitivity check; with --log, no refits)")
    ap.add_argument("--tie-se", type=float, default=ProbeConfig.tie_se,
                    help="C within this many (paired) standard errors of the best tie (sensitivity check; with --log, "
                         "the few-shot rules are replayed without refits, the full probes are re-run)")
    ap.add_argument("--test-draws", type=int, default=TEST_DRAWS,
                    help="noisy-digits: corrupt the 360 test images this many times (draw 0 is the original "
                         "noisy test set); every test accuracy is on all draws, the first draw's is reported too")
    ap.add_argument("--json", default=None)
    ap.add_argument("--log", default=None, help="append one JSON line per run here as it finishes; runs already "
                    "in the file are read back instead of refitted (resume)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = ProbeConfig(n_threads=1, device="cpu", prior_scale=args.prior_scale, tie_se=args.tie_se)
    shots = tuple(int(k) for k in args.shots.split(","))
    t0 = time.perf_counter()
    if args.test_draws < 1:
        ap.error("--test-draws must be at least 1")
    sets = feature_sets(args.sets.split(","), args.test_draws)

    def log(run: dict) -> None:
        if args.log:
            with open(args.log, "a") as f:
                f.write(json.dumps({"set": current[0], **run}) + "\n")

    current = [""]
    previous: list[dict] = []
    if args.log and os.path.exists(args.log):  # resume: runs already logged are read back, not refitted
        with open(args.log) as f:
            previous = [json.loads(line) for line in f if line.strip()]
    print(f"tiny-clip-digits, torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread")
    report: dict = {"args": vars(args), "sets": {}}
    for name, data in sets.items():
        zs = "none" if data["zeroshot"] is None else f"{data['zeroshot']:.2f} (first draw {data['zeroshot_first']:.2f})"
        print(f"[{name}] features {data['train'][0].shape[1]}-d; {len(data['test'][1])} test images "
              f"({data['test_draws']} draw(s)); zero-shot test top-1 {zs}", flush=True)
        current[0] = name
        # a logged run is reused only if it was measured on the same test draws
        done = {("linear" if r.get("linear") else r["k"], r["seed"]):
                {k: v for k, v in r.items() if k not in ("set", "linear")}
                for r in previous if r["set"] == name and r.get("test_draws", 1) == data["test_draws"]}
        few = fewshot_runs(cfg, data, range(args.seed_from, args.seeds), shots, log, done)
        lin = linear_runs(cfg, data, args.linear_seeds, log, done)
        by_k = defaultdict(list)
        for r in few:
            by_k[r["k"]].append(r)
        report["sets"][name] = {
            "zeroshot": data["zeroshot"], "zeroshot_first": data["zeroshot_first"], "test_draws": data["test_draws"],
            "n_test": int(len(data["test"][1])),
            "fewshot": {k: summarise(v) for k, v in by_k.items()},
            "linear": summarise(lin) if lin else None,
            "runs": {"fewshot": few, "linear": lin},
        }
    report["wall_s"] = time.perf_counter() - t0
    print("\n| set | k | chosen C | oracle C | C = 1 | gap to oracle (mean / max) | gap, first test draw only | picks "
          "at floor / ceiling | median C | fits | prior refuted | unpaired band (gap) | log-loss ties (gap, picks at "
          "an end) | smallest C (floor picks) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, rep in report["sets"].items():
        rows = [(f"{k}", s) for k, s in rep["fewshot"].items()] + ([("full", rep["linear"])] if rep["linear"] else [])
        for label, s in rows:
            if s.get("previous") is not None:
                ll = f"{s['ll_rule']:.2f} ({s['ll_rule_gap']:.2f}, {100 * s['ll_rule_edge_share']:.0f}%)"
                prev = f"{s['previous']:.2f} ({100 * s['previous_floor_share']:.0f}%)"
            elif s.get("old_k1") is not None:
                ll, prev = f"C = 1/spread: {s['old_k1']:.2f} ({s['old_k1_gap']:.2f})", "—"
            else:
                ll = prev = "—"
            unpaired = f"{s['unpaired']:.2f} ({s['unpaired_gap']:.2f})" if s.get("unpaired") is not None else "—"
            refuted = "—" if s.get("refuted") is None else f"{s['refuted']} of {s['n']}"
            first = "—" if rep["test_draws"] == 1 or s["gap_first_mean"] is None else f"{s['gap_first_mean']:.2f}"
            print(f"| {name} | {label} | {s['chosen']:.2f} | {s['oracle']:.2f} | {s['C1']:.2f} | "
                  f"{s['gap_mean']:.2f} / {s['gap_max']:.2f} | {first} | {100 * s['floor_share']:.0f}% / "
                  f"{100 * s['ceiling_share']:.0f}% | {s['median_C']:.3g} | {s['fits_mean']:.0f} | {refuted} | "
                  f"{unpaired} | {ll} | {prev} |")
    print(f"\nwall time {report['wall_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
