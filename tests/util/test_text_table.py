"""The CLI's text tables keep their layout: columns two spaces apart, numbers right-aligned, a dashed rule
under the header (the task catalogue: one rule line), no trailing blanks."""

from __future__ import annotations

import io

from clip_bench.cli.app import print_rows
from clip_bench.cli.catalog_view import format_task_table
from clip_bench.report.compare import Comparison, TaskComparison, format_comparison
from clip_bench.results.rows import make_row
from clip_bench.util.text_table import text_table

ROWS_TABLE = (
    "model              task                     protocol      metric                  value     95% CI      n  notes\n"
    "-----------------  -----------------------  ------------  ---------------------  ------  ---------  -----  "
    "----------\n"
    "ViT-B-32 (openai)  cifar10                  zeroshot      top1 *                  89.12  88.5-89.7  10000\n"
    "ViT-B-32 (openai)  imagenet [r200 classes]  linear_probe  mean_per_class_recall  100.00                50  "
    "--limit 50\n"
    "* main metric of the task; values in percent; 95% CI as in the rows' ci_method\n"
)
ROWS_TABLE_PLAIN = (
    "model              task                     protocol      metric                  value      n\n"
    "-----------------  -----------------------  ------------  ---------------------  ------  -----\n"
    "ViT-B-32 (openai)  cifar10                  zeroshot      top1 *                  89.12  10000\n"
    "ViT-B-32 (openai)  imagenet [r200 classes]  linear_probe  mean_per_class_recall  100.00     50\n"
    "* main metric of the task; values in percent\n"
)
TASK_TABLE = (
    "task           classes  templates  metric         size  sources        data\n"
    "-------------------------------------------------------------------------------------\n"
    "digits         10       1          accuracy          -  sklearn*       yes (needs no files)\n"
    "a_longer_name  0        0          mean_recall  31,014  wds*,karpathy  no\n"
    "unread         ?        ?          accuracy        360  wds*           no\n"
    "* default source; --source picks another; --data-root sets where data is looked for; size: samples in the "
    "evaluation split"
)
TASK_TABLE_DETAILS = TASK_TABLE + "\n\ndigits: d1"
COMPARISON = (
    "A: A (x)\n"
    "B: B (y)\n"
    "protocol zeroshot; values in percent, 95% intervals, Holm-corrected over 2 task(s) at alpha 0.05\n"
    "\n"
    "task                      metric                   n      A      B     A-B  95% CI            "
    "test                           p  p (Holm)  result\n"
    "------------------------  ---------------------  ---  -----  -----  ------  ----------------  "
    "-----------------------  -------  --------  --------\n"
    "t1                        top1                   600  90.50  70.25  +20.25  [+15.00, +25.50]  "
    "McNemar exact            1.0e-09   2.0e-09  A better\n"
    "long_task [r200 classes]  mean_per_class_recall   50  50.00  51.00   -1.00  [-9.50, +8.00]    "
    "paired bootstrap (1000)      0.8       0.8  tie\n"
    "\n"
    "A better on 1, B better on 0, no significant difference on 1 (of 2); mean A-B over tasks +9.62 [+3.00, +15.00]\n"
    "t3: refused, other samples\n"
    "a note\n"
)


def _rows():
    return [
        dict(model="ViT-B-32", pretrained="openai", task="cifar10", subset=None, protocol="zeroshot", metric="top1",
             is_main=True, value=89.123, ci_low=88.5, ci_high=89.7, n=10000, extra={}),
        dict(model="ViT-B-32", pretrained="openai", task="imagenet", subset="r200", protocol="linear_probe",
             metric="mean_per_class_recall", is_main=False, value=100.0, ci_low=None, ci_high=None, n=50,
             extra={"limit": 50}),
    ]


def test_text_table_aligns_columns():
    assert text_table([("a", "n"), ("long", "7"), ("b", "12")], right={1}) == [
        "a      n", "----  --", "long   7", "b     12"]
    assert text_table([("a", "b"), ("x", "")], rule=False) == ["a  b", "x"]


def test_result_rows_table():
    buf = io.StringIO()
    print_rows(_rows(), "table", buf)
    assert buf.getvalue() == ROWS_TABLE
    buf = io.StringIO()
    print_rows([{**r, "ci_low": None, "extra": {}} for r in _rows()], "table", buf)  # no CI, no notes: no columns
    assert buf.getvalue() == ROWS_TABLE_PLAIN


def test_task_table():
    infos = [dict(name="digits", kind="classification", version=1, classes=10, templates=1, metric="accuracy",
                  sources=["sklearn"], default_source="sklearn", data_present=True, detail="needs no files",
                  description="d1"),
             dict(name="a_longer_name", kind="retrieval", version=2, classes=0, templates=0, metric="mean_recall",
                  sources=["wds", "karpathy"], default_source="wds", data_present=False, detail="", description="",
                  size=31014),
             dict(name="unread", kind="classification", version=1, classes=None, templates=None, metric="accuracy",
                  sources=["wds"], default_source="wds", data_present=False, detail="", description="", size=360)]
    assert format_task_table(infos) == TASK_TABLE
    assert format_task_table(infos, details=True) == TASK_TABLE_DETAILS


def test_comparison_table():
    c = Comparison("A (x)", "B (y)", "zeroshot", 0.05, 1000, tasks=[
        TaskComparison("t1", None, "top1", 600, 90.5, 70.25, 20.25, 15.0, 25.5, "McNemar exact", 1e-9, 2e-9, True,
                       "A better"),
        TaskComparison("long_task", "r200", "mean_per_class_recall", 50, 50.0, 51.0, -1.0, -9.5, 8.0,
                       "paired bootstrap (1000)", 0.8, 0.8, False, "tie")],
        refused=["t3: refused, other samples"], notes=["a note"], wins=1, losses=0, ties=1, mean_diff=9.625,
        mean_ci_low=3.0, mean_ci_high=15.0)
    assert format_comparison(c) == COMPARISON


def test_rows_without_intervals_print_no_empty_ci_column(capsys):
    """Retrieval rows carry no interval: the table has no blank '95% CI' column (as the README shows)."""
    from clip_bench.cli.app import print_rows

    rows = [make_row(model="tiny-clip-digits", pretrained="builtin", task="flickr30k", protocol="retrieval",
                     metric=m, value=v, is_main=main, n=n)
            for m, v, main, n in (("text_retrieval_recall@1", 16.0, False, 50), ("mean_recall", 66.18, True, 149))]
    print_rows(rows, "table")
    out = capsys.readouterr().out
    assert "95% CI" not in out and out.splitlines()[-1] == "* main metric of the task; values in percent"
    assert out.splitlines()[2].split() == ["tiny-clip-digits", "(builtin)", "flickr30k", "retrieval",
                                           "text_retrieval_recall@1", "16.00", "50"]
