"""The package's public API: every exported name resolves and documents its arguments, and importing the
package stays light (no torch) until a name is used."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import clip_bench

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", clip_bench.__all__)
def test_every_exported_name_resolves_and_is_documented(name):
    obj = getattr(clip_bench, name)
    if name == "__version__":
        assert isinstance(obj, str)
        return
    assert obj.__module__.startswith("clip_bench.") and obj.__doc__ and obj.__doc__.strip()
    if inspect.isfunction(obj) and inspect.signature(obj).parameters:  # each argument is documented
        doc = inspect.getdoc(obj)
        assert "\nArgs:\n" in doc, f"{name}: no Args section"
        args = doc.split("\nArgs:\n", 1)[1]
        for param in inspect.signature(obj).parameters.values():
            shown = ("**" if param.kind is param.VAR_KEYWORD else "*" if param.kind is param.VAR_POSITIONAL else "")
            assert f"    {shown}{param.name}:" in args, f"{name}: argument {param.name} is not documented"


@pytest.mark.parametrize(("name", "module"), [("compare", "clip_bench.report.compare"),
                                              ("linprobe", "clip_bench.protocols.linprobe"),
                                              ("sweep", "clip_bench.protocols.sweep")])
def test_api_functions_keep_their_name_after_their_module_is_imported(name, module):
    """A function that shares its name with a submodule stays the function, whatever was imported first."""
    mod = importlib.import_module(module)
    assert getattr(clip_bench, name) is getattr(mod, name) and callable(getattr(clip_bench, name))
    assert name in dir(clip_bench)


def test_import_clip_bench_does_not_import_torch():
    code = "import sys, clip_bench; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_sweep_takes_model_names(eval_config, monkeypatch):
    """The friendly sweep turns names and (name, pretrained) pairs into the sweep's model entries."""
    sweep_module = importlib.import_module("clip_bench.protocols.sweep")  # clip_bench.protocols.sweep is the function
    seen = {}

    def fake_run_sweep(models, tasks, protocols, cfg, device, precision, echo):
        seen.update(models=models, tasks=tasks, protocols=protocols, cfg=cfg)
        return {"ran": 0, "done_before": 0, "failed": 0}

    monkeypatch.setattr(sweep_module, "run_sweep", fake_run_sweep)
    clip_bench.sweep(["tiny-clip-digits", ("ViT-B-32", "openai")], "digits", config=eval_config)
    entry = sweep_module.ModelEntry
    assert seen == {"models": [entry("tiny-clip-digits"), entry("ViT-B-32", "openai")], "tasks": ["digits"],
                    "protocols": ["zeroshot"], "cfg": eval_config}


def test_default_roots_have_one_definition(monkeypatch, tmp_path):
    from clip_bench import config
    from clip_bench.util import resources

    assert config.default_data_root is resources.default_data_root
    assert config.default_cache_dir is resources.default_cache_dir
    monkeypatch.setenv("CLIP_BENCH_DATA", str(tmp_path / "data"))
    assert config.EvalConfig().data_root == tmp_path / "data"


def test_the_task_list_reads_the_data_root_without_the_evaluation_code(tmp_path):
    """`clip-bench tasks` (and compare) take the default data root from the low-level settings module."""
    code = ("import sys; from clip_bench.cli.catalog_view import describe_tasks; import clip_bench.report.compare; "
            "info = describe_tasks(['cifar10']); print(info[0]['detail']); "
            "print('clip_bench.protocols.runner' in sys.modules)")
    env = {**os.environ, "CLIP_BENCH_DATA": str(tmp_path / "data")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"torchvision: no {tmp_path / 'data' / 'cifar10'}", "False"]
