"""Each row rule has one definition, and every reader gives the same answer: whether a row is standard
(compare, the sweep's "already done", the leaderboard, the report) and which rows are one result (the
report's deduplication and the outcomes file name agree with result_id)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from clip_bench.metrics.classification import all_metrics, main_metric_key
from clip_bench.models.resolve import ModelHandle
from clip_bench.protocols.sweep import Job, ModelEntry, _read_finished, expected_main_row, is_done
from clip_bench.report.compare import compare
from clip_bench.results.leaderboard import leaderboard_table, write_leaderboard
from clip_bench.results.outcomes import attach_outcomes, fallback_id
from clip_bench.results.rows import append_rows, is_standard, make_row, read_rows, result_id
from clip_bench.results.tables import load_rows

#: (value written as ``standard``, whether the row is standard); unreadable values are not standard.
STANDARD_VALUES = [
    (True, True), (False, False), ("true", True), ("FALSE", False), (" False ", False), ("false", False),
    ("0", False), ("1", True), ("no", False), ("Yes", True), (1, True), (0, False), (1.0, True),
]
UNREADABLE = ["maybe", [1], {"a": 1}, 2, ""]
ALL_VALUES = STANDARD_VALUES + [(v, False) for v in UNREADABLE]
IDS = [repr(v) for v, _ in ALL_VALUES]


def _row(**kw):
    base = dict(model="M", pretrained="w", model_fingerprint="fp-m", task="digits", task_version=1, source="sklearn",
                split="test", protocol="zeroshot", metric="top1", is_main=True, subset=None, standard=True,
                date="2026-01-01T00:00:00+00:00", value=91.5, n=360)
    return make_row(**{**base, **kw})


@pytest.mark.parametrize(("value", "expected"), ALL_VALUES, ids=IDS)
def test_is_standard_reads_every_spelling_alike(value, expected):
    assert is_standard({"standard": value}) is expected


@pytest.mark.parametrize(("extra", "expected"), [({}, True), ({"limit": 10}, False),
                                                 ({"classnames_file": "c.txt"}, False),
                                                 ({"templates_file": "t.txt"}, False)])
def test_rows_without_standard_follow_the_legacy_rule(extra, expected):
    assert is_standard({"standard": None, **extra}) is expected
    assert is_standard({"extra": extra}) is expected


def _scores(rng: np.random.Generator, labels: np.ndarray, accuracy: float) -> np.ndarray:
    scores = rng.normal(size=(labels.size, 10))
    right = rng.random(labels.size) < accuracy
    scores[np.arange(labels.size), labels] = np.where(right, 10.0, -10.0)
    return scores


def _write_run(out: Path, model: str, scores: np.ndarray, labels: np.ndarray, **fields) -> None:
    key = main_metric_key("accuracy")
    rows = [make_row(model=model, pretrained="tag", model_fingerprint=model, task="t1", task_version=1, source="s",
                     split="test", protocol="zeroshot", metric=m, value=v, is_main=(m == key), n=int(labels.size),
                     **{"date": "2026-01-01", **fields})
            for m, v in all_metrics(scores, labels, "accuracy").items()]
    attach_outcomes(rows, scores, labels, out)
    append_rows(out, rows)


@pytest.mark.parametrize(("value", "expected"), ALL_VALUES, ids=IDS)
def test_compare_prefers_the_standard_row_as_is_standard_reads_it(tmp_path, value, expected):
    """A later row marked not standard (in any spelling) never displaces the standard one in compare."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300)
    out = tmp_path / "results"
    _write_run(out, "good", _scores(rng, labels, 0.9), labels)
    _write_run(out, "bad", _scores(rng, labels, 0.6), labels)
    # a later run of "good" at 10% (other templates: another result), its standard field written as `value`
    _write_run(out, "good", _scores(rng, labels, 0.1), labels, standard=value, date="2026-06-01",
               templates_hash="0123456789abcdef")
    (t1,) = compare("good", "bad", out).tasks
    assert (t1.diff < 0) is expected  # the later 10% row is compared only if it is standard


@pytest.mark.parametrize(("value", "expected"), ALL_VALUES, ids=IDS)
def test_sweep_counts_a_job_done_only_on_a_standard_row(eval_config, value, expected):
    handle = ModelHandle.of("tiny-clip-digits", device="cpu")
    row = expected_main_row(handle, "digits", "zeroshot", eval_config)
    assert row["standard"] is True
    append_rows(eval_config.output_dir, [{**row, "model": "tiny-clip-digits", "value": 91.5, "standard": value}])
    job = Job(ModelEntry("tiny-clip-digits"), "digits", "zeroshot")
    assert is_done(job, _read_finished(eval_config), eval_config, handle) is expected
    assert not handle.is_loaded


@pytest.mark.parametrize(("value", "expected"), ALL_VALUES, ids=IDS)
def test_leaderboard_and_report_show_only_standard_rows(tmp_path, value, expected):
    append_rows(tmp_path, [_row(standard=value)])
    with open(write_leaderboard(tmp_path)) as fh:
        board = list(csv.DictReader(fh))
    assert [r["digits"] for r in board] == (["91.50"] if expected else [])
    loaded = load_rows(tmp_path)
    assert [r["value"] for r in loaded.standard] == ([91.5] if expected else [])
    assert list(leaderboard_table(loaded.rows).get("digits", [])) == ([91.5] if expected else [])
    readable = value not in UNREADABLE
    assert len(loaded.nonstandard) == (0 if expected or not readable else 1)
    assert loaded.malformed == (0 if readable else 1)  # an unreadable `standard` is a malformed row, said once


def test_an_unreadable_standard_field_is_a_skipped_line(tmp_path, capsys):
    append_rows(tmp_path, [_row(), _row(standard="maybe", date="2026-02-01T00:00:00+00:00", value=10.0)])
    assert [r["value"] for r in read_rows(tmp_path)] == [91.5]
    assert "line 2: standard 'maybe' is neither true nor false" in capsys.readouterr().err


def test_report_keeps_one_row_per_result_id_the_latest(tmp_path):
    """The report collapses exactly the rows result_id calls one measurement: two runs on other data are two
    results (both kept), one checkpoint under two names is one (the later row wins)."""
    first = _row(data_fingerprint="data-a")
    other_data = _row(data_fingerprint="data-b", value=80.0, date="2025-12-01T00:00:00+00:00")  # an earlier run
    renamed = _row(data_fingerprint="data-a", model="M-renamed", value=92.0, n=359, date="2026-03-01T00:00:00+00:00")
    assert result_id(first) == result_id(renamed) != result_id(other_data)
    append_rows(tmp_path, [first, other_data, renamed])
    loaded = load_rows(tmp_path)
    assert sorted(r["value"] for r in loaded.rows) == [80.0, 92.0]
    assert loaded.duplicates == 1


def test_report_keeps_hand_written_rows_of_two_models_apart(tmp_path):
    """Rows without a model fingerprint share a result_id across models; their names keep them apart."""
    a, b = _row(model="A", model_fingerprint=None), _row(model="B", model_fingerprint=None, value=50.0)
    append_rows(tmp_path, [a, b])
    assert sorted(r["model"] for r in load_rows(tmp_path).rows) == ["A", "B"]


def test_outcomes_fallback_id_is_the_result_id():
    """A row without a stored result_id names its outcomes file by the id result_id computes: rows scored on
    other data or at another precision never share an outcomes file."""
    row = {k: v for k, v in _row().items() if k != "result_id"}
    assert fallback_id(row) == result_id(row)
    others = [{**row, "data_fingerprint": "data-b"}, {**row, "precision": "bf16", "device": "cuda"},
              {**row, "task_hash": "h2"}]
    assert len({fallback_id(r) for r in [row, *others]}) == 4
