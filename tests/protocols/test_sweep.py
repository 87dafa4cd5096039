"""Sweeps run a grid, report failures without stopping, skip finished jobs when restarted, and print their
rows as JSON."""

from __future__ import annotations

import json

from clip_bench.cli.app import main
from clip_bench.protocols.sweep import ModelEntry, read_models_file, run_sweep
from clip_bench.results.rows import read_rows


def test_sweep_runs_skips_and_reports(tmp_path, eval_config):
    models = tmp_path / "models.txt"
    models.write_text("# name [pretrained]\ntiny-clip-digits\n")
    missing = tmp_path / "needs_data.yaml"
    missing.write_text("name: needs_data\nversion: 1\nprompts: digits\nmetric: accuracy\nsplits: [test]\n"
                       "sources:\n  local: {loader: imagefolder, path: nowhere}\n")
    entries = read_models_file(models)
    assert entries == [ModelEntry("tiny-clip-digits")]
    lines: list[str] = []
    first = run_sweep(entries, ["digits", str(missing)], ["zeroshot"], eval_config, device="cpu", echo=lines.append)
    assert first == {"done_before": 0, "ran": 1, "failed": 1}
    assert lines[-1].startswith("sweep: 1 ran, 0 already in the results, 1 failed")
    n_rows = len(read_rows(eval_config.output_dir))
    second = run_sweep(entries, ["digits"], ["zeroshot"], eval_config, device="cpu", echo=lines.append)
    assert second == {"done_before": 1, "ran": 0, "failed": 0}
    assert len(read_rows(eval_config.output_dir)) == n_rows  # nothing recomputed or re-appended


def test_models_yaml(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("- ViT-B/32\n- {name: ViT-B-32, pretrained: laion2b_s34b_b79k}\n")
    assert read_models_file(f) == [ModelEntry("ViT-B/32"), ModelEntry("ViT-B-32", "laion2b_s34b_b79k")]


def test_unresolvable_models_fail_their_jobs_and_the_others_run(tmp_path, capsys):
    from clip_bench.cli.app import main

    models = tmp_path / "models.txt"
    models.write_text(f"tiny-clip-digits {tmp_path / 'missing.safetensors'}\nno-such-model\ntiny-clip-digits\n")
    code = main(["sweep", "--models", str(models), "--tasks", "digits", "--protocols", "zeroshot", "--workers", "0",
                 "--quiet", "--device", "cpu", "--cache-dir", str(tmp_path / "cache"),
                 "--output-dir", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 1  # as documented: some job failed
    assert "sweep: 1 ran, 0 already in the results, 2 failed (3 jobs)" in out
    failed = [line for line in (out + err).splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2, out + err
    assert f"checkpoint file {tmp_path / 'missing.safetensors'} does not exist" in failed[0]
    assert "unknown model 'no-such-model'" in failed[1]
    assert [r["model"] for r in read_rows(tmp_path / "out") if r.get("is_main")] == ["tiny-clip-digits"]
    assert "Traceback" not in err


def test_sweep_format_json_prints_only_the_rows(tmp_path, capsys):
    """`--format json` is among sweep's options: stdout is exactly the rows of the jobs run (was: ignored)."""
    models = tmp_path / "models.txt"
    models.write_text("tiny-clip-digits\n")
    args = ["sweep", "--models", str(models), "--tasks", "digits", "--cache-dir", str(tmp_path / "c"),
            "--output-dir", str(tmp_path / "o"), "--workers", "0", "--device", "cpu", "--format", "json"]
    assert main(args) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert [round(r["value"], 2) for r in rows if r["is_main"]] == [91.67]
    assert "1 ran" in out.err
    assert main(args) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == [] and "1 already in the results" in out.err
