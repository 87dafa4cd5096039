"""Bad flags and files on the command line: one line saying what is expected, exit status 2, never a
traceback, run in-process as a new user would type them."""

from __future__ import annotations

import io
import os

import pytest
from cli_checks import cli, one_line_error

from clip_bench.cli.app import error_line, main
from clip_bench.config import EvalConfig, ExtractConfig
from clip_bench.tasks.prompts import load_templates
from clip_bench.util.errors import ClipBenchError

ZS = ["zeroshot", "--model", "tiny-clip-digits", "--task", "digits", "--quiet", "--workers", "0", "--no-cache"]
LP = ["linprobe", "--model", "tiny-clip-digits", "--task", "digits", "--quiet", "--workers", "0", "--no-cache"]
FS = ["fewshot", "--model", "tiny-clip-digits", "--task", "digits", "--quiet", "--workers", "0", "--no-cache"]
POSITIVE = "expected a positive integer (1 or more)"


@pytest.mark.parametrize("argv, expect", [
    (ZS + ["--limit", "0"], f"argument --limit: {POSITIVE}, got '0'"),
    (ZS + ["--limit", "-5"], f"argument --limit: {POSITIVE}, got '-5'"),
    (ZS + ["--batch-size", "0"], f"argument --batch-size: {POSITIVE}, got '0'"),
    (ZS + ["--shard-size", "0"], f"argument --shard-size: {POSITIVE}, got '0'"),
    (ZS + ["--shard-size", "-2048"], f"argument --shard-size: {POSITIVE}, got '-2048'"),
    (ZS + ["--workers", "-1"], "argument --workers: expected an integer >= 0, got '-1'"),
    (ZS + ["--device", "tpu"], "argument --device: expected cpu, cuda, cuda:N (a GPU index) or mps, got 'tpu'"),
    (ZS + ["--device", "cuda:x"], "argument --device: expected cpu, cuda, cuda:N (a GPU index) or mps"),
    (LP + ["--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (LP + ["--val-fraction", "1.5"], "argument --val-fraction: expected a fraction between 0 and 1 (exclusive)"),
    (LP + ["--val-fraction", "0"], "argument --val-fraction: expected a fraction between 0 and 1 (exclusive)"),
    (LP + ["--val-fraction", "nan"], "argument --val-fraction: expected a fraction between 0 and 1 (exclusive)"),
    (LP + ["--probe-device", "tpu"], "argument --probe-device: expected cpu, cuda, cuda:N"),
    (FS + ["--seeds", "0"], f"argument --seeds: {POSITIVE}, got '0'"),
    (FS + ["--shots", "1", "0"], f"argument --shots: {POSITIVE}, got '0'"),
    (["sweep", "--models", "m.txt", "--tasks", "digits", "--device", "tpu"], "argument --device: expected cpu, cuda"),
])
def test_bad_flag_values_are_one_line(capsys, argv, expect, tmp_path):
    msg = one_line_error([*argv, "--output-dir", str(tmp_path / "out")], capsys)
    assert msg.startswith(f"clip-bench {argv[0]}: error: ") and expect in msg, msg
    assert not (tmp_path / "out").exists()


def test_good_device_names_pass():
    from clip_bench.cli.app import device_name

    assert [device_name(d) for d in ("cpu", "cuda", "cuda:1", "mps")] == ["cpu", "cuda", "cuda:1", "mps"]


def test_templates_or_classnames_that_are_a_directory_or_not_utf8(tmp_path, capsys):
    folder = tmp_path / "templates.txt"
    folder.mkdir()
    out = ["--output-dir", str(tmp_path / "out")]
    msg = one_line_error([*ZS, "--templates", str(folder), *out], capsys)
    assert f"prompt file {folder} is a directory; expected a .json or .txt file" in msg
    plain_dir = tmp_path / "names"
    plain_dir.mkdir()
    msg = one_line_error([*ZS, "--classnames", str(plain_dir), *out], capsys)
    assert f"prompt file {plain_dir} is a directory" in msg
    latin = tmp_path / "latin.txt"
    latin.write_bytes("une photo du chiffre {} \xe9crit\n".encode("latin-1"))
    msg = one_line_error([*ZS, "--templates", str(latin), *out], capsys)
    assert f"prompt file {latin} is not UTF-8 text" in msg
    latin_json = tmp_path / "latin.json"
    latin_json.write_bytes('["z\xe9ro", "un"]'.encode("latin-1"))
    assert f"prompt file {latin_json} is not UTF-8 text" in one_line_error([*ZS, "--classnames", str(latin_json), *out],
                                                                            capsys)


def test_a_byte_order_mark_does_not_change_the_first_template(tmp_path):
    plain, bom = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_text("a photo of the number: {}.\na digit {}.\n", encoding="utf-8")
    bom.write_text("a photo of the number: {}.\na digit {}.\n", encoding="utf-8-sig")
    assert load_templates(str(bom)) == load_templates(str(plain))


def test_unknown_source_lists_the_task_sources(capsys, tmp_path):
    msg = one_line_error([*ZS, "--source", "wds", "--output-dir", str(tmp_path / "o")], capsys)
    assert "task 'digits' has no source 'wds'; its sources are: sklearn" in msg, msg
    msg = one_line_error(["zeroshot", "--model", "tiny-clip-digits", "--task", "cifar10", "--source", "wdss",
                          "--output-dir", str(tmp_path / "o")], capsys)
    assert "has no source 'wdss' (did you mean 'wds'?); its sources are: torchvision, wds" in msg, msg


def test_models_into_a_closed_pipe_is_quiet(monkeypatch, capsys):
    """``clip-bench models | head``: today a BrokenPipeError traceback once head has exited."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone
    stdout = io.TextIOWrapper(io.FileIO(write_end, "w"), write_through=False)
    monkeypatch.setattr("sys.stdout", stdout)
    from clip_bench.cli.app import main

    code = main(["models"])
    monkeypatch.undo()
    assert code == 141
    assert capsys.readouterr().err == ""


def test_errors_name_cli_flags_not_python_arguments():
    exc = ClipBenchError("k=4 needs 4 training examples per class, but class 3 has 2; "
                         "pass allow_fewer=True to keep going")
    assert error_line(exc) == ("clip-bench: error: k=4 needs 4 training examples per class, but class 3 has 2; "
                               "pass --allow-fewer to keep going")
    assert error_line(ClipBenchError("two\n  lines")) == "clip-bench: error: two lines"


def test_fewer_than_k_names_the_python_argument_in_python_and_the_flag_once_on_the_cli():
    import numpy as np

    from clip_bench.probe.fewshot import sample_k_shot

    for n_classes in (None, 3):  # a short class, and an empty one
        with pytest.raises(ClipBenchError) as err:
            sample_k_shot(np.array([0] * 10 + [1] * 3), 4, seed=0, n_classes=n_classes)
        assert "(Python: allow_fewer=True)" in str(err.value)
        line = error_line(err.value)
        assert line.count("--allow-fewer") == 1 and "Python" not in line and "allow_fewer" not in line, line


@pytest.mark.slow
def test_fewshot_too_few_examples_names_the_flag(capsys, tmp_path):
    msg = one_line_error([*FS, "--shots", "500", "--seeds", "1", "--no-zeroshot", "--output-dir", str(tmp_path / "o")],
                         capsys)
    assert msg.count("--allow-fewer") == 1 and "allow_fewer=True" not in msg and "Python" not in msg, msg


def test_help_and_version_still_exit_cleanly(capsys):
    code, out, _ = cli(["--version"], capsys)
    assert code == 0 and out.startswith("clip-bench ")


@pytest.mark.parametrize("config, kwargs", [
    (ExtractConfig, {"batch_size": 0}), (ExtractConfig, {"workers": -1}), (ExtractConfig, {"shard_size": 0}),
    (ExtractConfig, {"shard_size": 2.5}), (EvalConfig, {"limit": 0}), (EvalConfig, {"limit": 2.5}),
])
def test_python_api_configs_check_their_values(config, kwargs):
    (name,) = kwargs
    with pytest.raises(ClipBenchError, match=rf"{config.__name__}\.{name} must be"):
        config(**kwargs)


def test_a_missing_prompt_file_is_named_once(capsys, tmp_path):
    from clip_bench.cli.app import main

    assert main(["zeroshot", "--model", "tiny-clip-digits", "--task", "digits", "--classnames", "/nonexistent.txt",
                 "--output-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "clip-bench: error: no prompt file '/nonexistent.txt': looked for /nonexistent.txt."


def test_models_filter_applies_to_every_section(capsys):
    assert main(["models", "--filter", "siglip"]) == 0
    out = capsys.readouterr().out
    assert "tiny-clip-digits" not in out and "ViT-B-16-SigLIP" in out  # the built-in model ignored the filter
    assert main(["models", "--filter", "no-such-model-zzz"]) == 2
    assert "no model name or pretrained tag contains 'no-such-model-zzz'" in capsys.readouterr().err
