"""Strict task files, collections and sweep model lists: every mistake is one line naming the file, the
key and what was expected, through the CLI as a new user meets it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cli_checks import cli, one_line_error

from clip_bench.protocols.sweep import ModelEntry, read_models_file
from clip_bench.tasks.catalog import get_task, list_tasks
from clip_bench.tasks.schema import SOURCE_KEYS, TASK_KEYS, TASK_KINDS, parse_collections
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.resources import data_dir

#: A small valid task: digits' 10 classes from an image folder.
GOOD = {
    "name": "mytask", "version": 1, "prompts": "digits", "metric": "accuracy", "splits": ["train", "test"],
    "sources": {"local": {"loader": "imagefolder", "path": "mytask", "expected": {"test": 10}}},
}


def write_task(folder: Path, raw: dict, stem: str | None = None) -> Path:
    path = folder / f"{stem or raw.get('name', 'task')}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def with_changes(**changes) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, value in changes.items():
        if key.startswith("src_"):
            raw["sources"]["local"][key[4:]] = value
        else:
            raw[key] = value
    return raw


def test_every_shipped_task_and_collection_passes_the_schema():
    names = sorted(p.stem for p in data_dir("tasks").glob("*.yaml") if p.stem != "collections")
    assert names == list_tasks() and len(names) >= 34
    keys_in_use: set[str] = set()
    for name in names:
        raw = yaml.safe_load((data_dir("tasks") / f"{name}.yaml").read_text())
        keys_in_use |= set(raw) | {f"source.{k}" for s in raw["sources"].values() for k in s}
        task = get_task(name)
        assert task.name == name and task.extra.get("kind", "classification") in TASK_KINDS
    assert keys_in_use <= set(TASK_KEYS) | {f"source.{k}" for k in SOURCE_KEYS}
    assert {"subsets", "class_groups", "multilabel", "eval_split", "source.label_map"} <= keys_in_use


def test_a_good_user_task_with_kind_and_extra_keys_parses(tmp_path):
    path = write_task(tmp_path,
                      with_changes(kind="retrieval", metric="mean_recall", class_groups=[0, [1, 2]],
                                   subsets={"few": "imagenet_r_classes"}))
    task = get_task(str(path))
    assert task.extra == {"kind": "retrieval", "class_groups": [0, [1, 2]], "subsets": {"few": "imagenet_r_classes"}}


def test_misspelt_label_map_is_an_error_not_dropped(tmp_path, capsys):
    """Today a misspelt ``lable_map`` is silently dropped, so the labels are in the wrong order."""
    path = write_task(tmp_path, with_changes(src_lable_map=[1, 0, 2, 3, 4, 5, 6, 7, 8, 9]))
    msg = one_line_error(["tasks", str(path)], capsys)
    assert str(path) in msg and "unknown key 'lable_map' in source 'local'" in msg and "did you mean 'label_map'" in msg


@pytest.mark.parametrize("changes, expect", [
    ({"metirc": "accuracy"}, "unknown key 'metirc' at the top level; did you mean 'metric'"),
    ({"label_map": [0, 1]}, "'label_map' belongs inside a source"),
    ({"colour": "red"}, "allowed keys: name, version"),
    ({"version": "one"}, "'version' at the top level must be a positive integer"),
    ({"version": 0}, "'version' at the top level must be a positive integer"),
    ({"version": True}, "'version' at the top level must be a positive integer"),
    ({"splits": "test"}, "'splits' at the top level must be a list of split names"),
    ({"name": 42}, "'name' at the top level must be a task name"),
    ({"name": "../evil"}, "'name' at the top level must be a task name"),
    ({"metric": "top1"}, "'metric' at the top level must be one of accuracy, "),
    ({"kind": "detection"}, "'kind' at the top level must be one of classification, retrieval"),
    ({"multilabel": "yes"}, "'multilabel' at the top level must be true or false"),
    ({"sources": ["local"]}, "'sources' at the top level must be a mapping of source name"),
    ({"sources": {"local": "imagefolder"}}, "source 'local' must be a mapping of settings"),
    ({"src_label_map": ["a", "b"]}, "'label_map' in source 'local' must be a list of task class indices"),
    ({"src_expected": {"test": "ten"}}, "'expected' in source 'local' must be a mapping of split -> sample count"),
    ({"src_expected": {"test": 10.0}}, "'expected' in source 'local' must be a mapping of split -> sample count"),
    ({"src_args": ["a"]}, "'args' in source 'local' must be a mapping of loader arguments"),
    ({"src_files": {"test": 3}}, "'files' in source 'local' must be a mapping of split -> a file path"),
    ({"src_loader": None}, "'loader' in source 'local' must be a loader name"),
    ({"src_expected": {"val": 10}},
     "'expected' in source 'local' names split 'val', which is not in the task's 'splits'"),
    ({"eval_split": "val"}, "'eval_split' is 'val', which is not in 'splits' (train, test)"),
    ({"default_source": "wds"}, "'default_source' is 'wds', not one of the sources (local)"),
    ({"splits": ["test", "test"]}, "'splits' names a split twice"),
    ({"multilabel": True}, "metric 'accuracy' does not fit multilabel: True"),  # crashed deep in the metric
    ({"metric": "map_11point"}, "metric 'map_11point' does not fit multilabel: False"),
    ({"src_label_map": [0, 1, 2, 3, 4, 5, 6, 7, 8]},
     "'label_map' in source 'local' has 9 entries but the task has 10 classes"),
    ({"src_label_map": [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]}, "'label_map' in source 'local' repeats class 8"),
    ({"src_label_map": [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]}, "'label_map' in source 'local' has class 10, out of range"),
])
def test_wrong_keys_and_types_are_one_line_naming_file_and_key(tmp_path, capsys, changes, expect):
    path = write_task(tmp_path, with_changes(**changes), stem="mytask")
    msg = one_line_error(["tasks", str(path)], capsys)
    assert msg.startswith(f"clip-bench: error: task file {path}: ") and expect in msg, msg


def test_missing_required_keys_and_non_mappings(tmp_path, capsys):
    raw = with_changes()
    del raw["metric"]
    msg = one_line_error(["tasks", str(write_task(tmp_path, raw))], capsys)
    assert "missing required key 'metric' (one of accuracy" in msg
    del raw["sources"]["local"]["loader"]
    raw["metric"] = "accuracy"
    assert "source 'local' has no 'loader'" in one_line_error(["tasks", str(write_task(tmp_path, raw))], capsys)
    listed = tmp_path / "list.yaml"
    listed.write_text("- name\n- version\n")
    assert "must hold a mapping of keys" in one_line_error(["tasks", str(listed)], capsys)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert "got an empty file" in one_line_error(["tasks", str(empty)], capsys)


def test_repeated_key_and_invalid_yaml_and_bytes(tmp_path, capsys):
    twice = tmp_path / "twice.yaml"
    twice.write_text(yaml.safe_dump(GOOD, sort_keys=False) + "version: 2\n")
    msg = one_line_error(["tasks", str(twice)], capsys)
    assert str(twice) in msg and "key 'version' appears twice" in msg
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert f"task file {bad} is not valid YAML" in one_line_error(["tasks", str(bad)], capsys)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert f"task file {latin} is not UTF-8 text" in one_line_error(["tasks", str(latin)], capsys)


def test_include_merges_and_a_loop_is_named(tmp_path, capsys):
    base = write_task(tmp_path, with_changes(name="base"))
    child = write_task(tmp_path, {"include": "base", "name": "child", "version": 2})
    task = get_task(str(child))
    assert (task.name, task.version, task.metric, list(task.sources)) == ("child", 2, "accuracy", ["local"])
    write_task(tmp_path, {"include": "b", "name": "a"}, stem="a")
    write_task(tmp_path, {"include": "a", "name": "b"}, stem="b")
    msg = one_line_error(["tasks", str(tmp_path / "a.yaml")], capsys)
    assert "'include' loop: a.yaml -> b.yaml -> a.yaml" in msg
    self_loop = write_task(tmp_path, {"include": "me", "name": "me"}, stem="me")
    assert "'include' loop: me.yaml -> me.yaml" in one_line_error(["tasks", str(self_loop)], capsys)
    orphan = write_task(tmp_path, {"include": "nope", "name": "orphan"})
    assert "'include' names task 'nope'" in one_line_error(["tasks", str(orphan)], capsys)
    typo = write_task(tmp_path, {"include": "base", "name": "typo", "verison": 3})
    assert "did you mean 'version'" in one_line_error(["tasks", str(typo)], capsys)
    assert base.exists()


def test_bad_user_task_file_does_not_break_the_listing(tmp_path, capsys, monkeypatch):
    write_task(tmp_path, with_changes(name="good_one"))
    bad = write_task(tmp_path, with_changes(name="bad_one", version="one"))
    monkeypatch.setenv("CLIP_BENCH_TASKS", str(tmp_path))
    code, out, err = cli(["tasks"], capsys)
    assert code == 0 and "good_one" in out and "digits" in out and "bad_one" not in out
    (line,) = err.strip().splitlines()
    assert str(bad) in line and "'version'" in line
    msg = one_line_error(["tasks", "bad_one"], capsys)  # named explicitly: an error
    assert str(bad) in msg


def test_user_task_shadowing_a_builtin_is_an_error(tmp_path, capsys, monkeypatch):
    shadow = write_task(tmp_path, with_changes(name="digits"))
    monkeypatch.setenv("CLIP_BENCH_TASKS", str(tmp_path))
    msg = one_line_error(["zeroshot", "--model", "tiny-clip-digits", "--task", "digits", "--output-dir",
                          str(tmp_path / "out")], capsys)
    assert f"task file {shadow} shadows the built-in task 'digits'; rename it" in msg
    assert not (tmp_path / "out").exists()
    code, out, err = cli(["tasks"], capsys)
    assert code == 0 and "shadows the built-in task 'digits'" in err and len(err.strip().splitlines()) == 1


def test_user_task_name_must_match_its_file(tmp_path, capsys, monkeypatch):
    write_task(tmp_path, with_changes(name="cifar10"), stem="mine")
    monkeypatch.setenv("CLIP_BENCH_TASKS", str(tmp_path))
    msg = one_line_error(["tasks", "mine"], capsys)
    assert "'name' is 'cifar10' but the file is mine.yaml" in msg


@pytest.mark.parametrize("raw, expect", [
    ({"mine": ["digits", "digitz"]}, "collection 'mine' names 'digitz', which is not a task (did you mean 'digits'?)"),
    ({"mine": "digits"}, "collection 'mine' must be a list of task names"),
    ({"mine": {"tasks": ["digits"]}}, "collection 'mine' must be a list of task names"),
    ({"digits": ["digits"]}, "collection 'digits' is a task's name"),
    ({"all": ["digits"]}, "collection 'all' is reserved"),
    (["digits"], "must map collection names to lists of task names, got list"),
])
def test_collections_are_checked(raw, expect):
    with pytest.raises(ClipBenchError, match="collections file c.yaml: " if isinstance(raw, dict) else "c.yaml") as err:
        parse_collections(raw, "c.yaml", set(list_tasks()))
    assert expect in str(err.value)


@pytest.mark.parametrize("text, suffix, expect", [
    ("- name: tiny-clip-digits\n  pretrain: x\n", ".yaml", "unknown key 'pretrain'"),
    ("- 42\n", ".yaml", "each entry must be a model name (a string)"),
    ("- name: [a]\n", ".yaml", "each entry must be a model name (a string)"),
    ("tiny-clip-digits: null\n", ".yaml", "must hold a YAML list"),
    ("", ".yaml", "must hold a YAML list"),
    ("[]", ".yaml", "lists no models"),
    ("# nothing\n\n", ".txt", "lists no models"),
    ("ViT-B-32 openai extra\n", ".txt", "line 1: expected 'name [pretrained]', got 3 words"),
])
def test_sweep_models_file_is_checked(tmp_path, capsys, text, suffix, expect):
    path = tmp_path / f"models{suffix}"
    path.write_text(text)
    msg = one_line_error(["sweep", "--models", str(path), "--tasks", "digits", "--output-dir", str(tmp_path / "o")],
                         capsys)
    assert f"models file {path}" in msg and expect in msg, msg


def test_sweep_models_file_good_entries(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("- tiny-clip-digits\n- {name: ViT-B-32, pretrained: openai}\n")
    assert read_models_file(path) == [ModelEntry("tiny-clip-digits"), ModelEntry("ViT-B-32", "openai")]


@pytest.mark.parametrize("args, expect", [
    ({"folderz": "x.txt"}, "has unknown argument 'folderz'; did you mean 'folders'?"),
    ({"colour": 1}, "has unknown argument 'colour'; it takes folders, split_dirs, allow_extra_folders."),
])
def test_unknown_loader_argument_is_named(tmp_path, capsys, args, expect):
    """Today a source's misspelt loader argument is a TypeError traceback from inside the loader."""
    path = write_task(tmp_path, with_changes(src_args=args))
    msg = one_line_error(["zeroshot", "--model", "tiny-clip-digits", "--task", str(path), "--data-root", str(tmp_path),
                          "--output-dir", str(tmp_path / "o"), "--no-cache"], capsys)
    assert f"task file {path}: 'args' of source 'local' (loader imagefolder) {expect}" in msg, msg


def test_missing_loader_argument_and_unknown_loader(tmp_path, capsys):
    path = write_task(tmp_path, with_changes(src_loader="sampled_folders"))
    argv = ["zeroshot", "--model", "tiny-clip-digits", "--task", str(path), "--data-root", str(tmp_path), "--no-cache",
            "--output-dir", str(tmp_path / "o")]
    assert "lacks the required argument 'folder'" in one_line_error(argv, capsys)
    write_task(tmp_path, with_changes(src_loader="imagefolders"))
    msg = one_line_error(argv, capsys)
    assert f"task file {path}: source 'local': unknown loader 'imagefolders'. Did you mean: imagefolder" in msg


def test_task_path_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert f"task file {missing} does not exist" in one_line_error(["tasks", str(missing)], capsys)
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    assert f"task file {folder} is a directory" in one_line_error(["tasks", str(folder)], capsys)
