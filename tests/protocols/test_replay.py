"""backfill: outcomes of rows written before outcomes existed are rebuilt from the caches, without a model,
and a row whose features are not cached names the command that computes them."""

from __future__ import annotations

import json

import pytest

from clip_bench.protocols.replay import backfill
from clip_bench.results import outcomes
from clip_bench.util.errors import ClipBenchError


@pytest.mark.slow
def test_backfill_rebuilds_outcomes_from_the_caches_without_a_model(digits_runs, tmp_path, monkeypatch):
    cfg, zs, _, _ = digits_runs
    import clip_bench.models.resolve as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("backfill loaded the model"))
    for row in zs:
        # a pre-stats row
        old = {k: v for k, v in row.items() if k not in ("ci_low", "ci_high", "ci_method", "outcomes")}
        out = backfill(old, tmp_path, cfg.cache_dir, cfg.data_root)
        original = outcomes.load(cfg.output_dir / row["outcomes"])
        assert out.sample_hash == original.sample_hash and out.value == original.value
        assert (tmp_path / outcomes.outcome_relpath(old)).is_file()
    with pytest.raises(ClipBenchError, match=r"not in the cache .*run `clip-bench zeroshot --model tiny-clip-digits "
                                             r"--task digits --source sklearn --output-dir"):
        backfill(old, tmp_path, tmp_path / "empty-cache", cfg.data_root)
    lp = json.loads(json.dumps({**old, "protocol": "linear_probe"}))
    with pytest.raises(ClipBenchError, match="run `clip-bench linprobe"):
        backfill(lp, tmp_path, cfg.cache_dir, cfg.data_root)
