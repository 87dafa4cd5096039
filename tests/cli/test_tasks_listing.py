"""`clip-bench tasks <collection>`: each task with its metric, source, size and whether its data is there; class
and template counts of the DataComp tasks come from the data's own files once they are on disk."""

from __future__ import annotations

import json
import re

from cli_checks import cli
from dataset_fixtures import digits_rgb, write_wds

from clip_bench.tasks.catalog import list_collections


def table_rows(out: str) -> dict[str, list[str]]:
    """Task name -> the cells of its line in the table (cells are two or more spaces apart)."""
    lines = out.splitlines()
    end = next(i for i, ln in enumerate(lines) if ln.startswith("* default source"))
    return {ln.split()[0]: re.split(r"\s{2,}", ln.strip()) for ln in lines[2:end]}


def test_openclip35_lists_metric_source_size_and_data(tmp_path, capsys):
    images, labels = digits_rgb("test", 32)
    write_wds(tmp_path / "wds_mnist_test", "test", images[:10], labels[:10], [str(i) for i in range(10)],
              templates=("a photo of the number: {c}.", "the digit {c}", "{c}"))
    code, out, err = cli(["tasks", "openclip35", "--data-root", str(tmp_path)], capsys)
    assert code == 0 and not err
    rows = table_rows(out)
    assert list(rows) == list_collections()["openclip35"]
    assert rows["datacomp_mnist"][:6] == ["datacomp_mnist", "10", "3", "accuracy", "10,000", "wds*"]
    assert rows["datacomp_mnist"][6].startswith("yes")
    assert rows["datacomp_sun397"][:6] == ["datacomp_sun397", "?", "?", "accuracy", "108,754", "wds*"]
    assert rows["datacomp_sun397"][6] == f"no (wds: no {tmp_path / 'wds_sun397_test'})"
    assert rows["datacomp_dollar_street"][3:5] == ["worst_group_top5", "3,503"]
    assert "datacomp_fmow: FMoW as the DataComp" in out  # a named collection shows the descriptions


def test_datacomp38_json_has_size_and_presence(tmp_path, capsys):
    code, out, _ = cli(["tasks", "datacomp38", "--data-root", str(tmp_path), "--format", "json"], capsys)
    infos = json.loads(out)
    assert code == 0 and [i["name"] for i in infos] == list_collections()["datacomp38"]
    iwildcam = next(i for i in infos if i["name"] == "datacomp_iwildcam")
    assert (iwildcam["metric"], iwildcam["size"], iwildcam["data_present"], iwildcam["classes"]) == (
        "macro_f1", 42791, False, None)
    assert iwildcam["sources"] == ["wds"] and "wds_wilds-iwildcam_test" in iwildcam["detail"]
