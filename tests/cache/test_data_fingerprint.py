"""The data is part of a number's identity: a content fingerprint of the files each split reads is in the
feature-cache key, every row's result_id and the outcomes' sample hash."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import digits_rgb, encode, write_digit_folder, write_idx, write_mnist
from task_fixtures import fixture_task, main_row

from clip_bench import zeroshot
from clip_bench.cache import data_fingerprint as dfp
from clip_bench.cli.app import main
from clip_bench.loaders import LOADERS, load_split
from clip_bench.loaders.base import LabeledImages
from clip_bench.loaders.torchvision_loader import DATASET_FILES
from clip_bench.probe.protocol import ProbeConfig
from clip_bench.protocols.linprobe import linprobe
from clip_bench.protocols.sweep import ModelEntry, run_sweep
from clip_bench.report.compare import compare
from clip_bench.results.rows import read_rows
from clip_bench.tasks.catalog import get_task
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.resources import data_dir

N_TEST = 120
HOUR_AGO = time.time() - 3600


@pytest.fixture(autouse=True)
def _memoise_fresh_files(monkeypatch):
    """Fixture files are seconds old; let the file-hash store memoise them, so a swap must miss the memo."""
    monkeypatch.setattr(dfp, "RACY_SECONDS", 0.0)


def _mnist(tmp_path: Path, data_root: Path) -> str:
    """Clean MNIST idx files (digits at 28 px) under `data_root`, and a task file expecting their counts."""
    write_mnist(data_root / "mnist", n_test=N_TEST)
    return fixture_task(tmp_path, "mnist", {"torchvision": {"train": 50, "test": N_TEST}})


def _make_noisy(data_root: Path) -> None:
    """Overwrite the test images with other images of the same shape (same labels, same file size)."""
    raw = data_root / "mnist" / "MNIST" / "raw"
    clean = np.frombuffer((raw / "t10k-images-idx3-ubyte").read_bytes()[16:], np.uint8).reshape(N_TEST, 28, 28)
    rng = np.random.default_rng(1)
    noisy = np.where(rng.random(clean.shape) < 0.35, rng.integers(0, 256, clean.shape), clean).astype(np.uint8)
    write_idx(raw / "t10k-images-idx3-ubyte", noisy)


def _fresh_value(task: str, cfg) -> float:
    """The main value computed from scratch (no cache, no output): the right number for the data now."""
    return main_row(zeroshot("tiny-clip-digits", task, replace(cfg, cache_dir=None, output_dir=None),
                             device="cpu"))["value"]


def test_other_images_under_the_same_root_are_a_new_identity_with_the_right_number(tmp_path, eval_config):
    task = _mnist(tmp_path, eval_config.data_root)
    entries = [ModelEntry("tiny-clip-digits")]
    lines: list[str] = []
    assert run_sweep(entries, [task], ["zeroshot"], eval_config, device="cpu", echo=lines.append)["ran"] == 1
    clean = main_row(read_rows(eval_config.output_dir))
    assert clean["value"] == _fresh_value(task, eval_config)

    _make_noisy(eval_config.data_root)
    noisy_truth = _fresh_value(task, eval_config)
    assert noisy_truth < clean["value"] - 5  # the noise really changes the number
    # the sweep on the other data runs the job again (its identity is new)
    assert run_sweep(entries, [task], ["zeroshot"], eval_config, device="cpu", echo=lines.append)["ran"] == 1
    noisy = [r for r in read_rows(eval_config.output_dir) if r["is_main"]][-1]
    assert noisy["value"] == noisy_truth
    assert noisy["result_id"] != clean["result_id"]
    assert noisy["extra"]["data_fingerprint"] != clean["extra"]["data_fingerprint"]
    assert noisy["outcomes"] != clean["outcomes"]  # the first run's evidence is kept, not overwritten
    # with the cache, through the API: the cached entry of the noisy data, not of the clean data
    cached = main_row(zeroshot("tiny-clip-digits", task, replace(eval_config, output_dir=None), device="cpu"))
    assert (cached["value"], cached["result_id"]) == (noisy_truth, noisy["result_id"])
    assert len(list((eval_config.cache_dir / "features").iterdir())) == 2


def test_the_same_data_under_another_root_is_the_same_identity_and_a_cache_hit(tmp_path, eval_config, monkeypatch):
    task = _mnist(tmp_path, eval_config.data_root)
    first = main_row(zeroshot("tiny-clip-digits", task, eval_config, device="cpu"))
    copy = tmp_path / "copied-data"
    shutil.copytree(eval_config.data_root, copy)
    import clip_bench.cache.extract as extraction

    monkeypatch.setattr(extraction, "_encode_shards", lambda *a, **k: pytest.fail("features were extracted again"))
    second = main_row(zeroshot("tiny-clip-digits", task, replace(eval_config, data_root=copy), device="cpu"))
    assert second["extra"]["data_fingerprint"] == first["extra"]["data_fingerprint"]
    assert (second["result_id"], second["value"]) == (first["result_id"], first["value"])
    assert len(list((eval_config.cache_dir / "features").iterdir())) == 1


def test_compare_refuses_rows_measured_on_different_images(tmp_path, eval_config, capsys):
    task = _mnist(tmp_path, eval_config.data_root)
    results = tmp_path / "all"
    zeroshot("tiny-clip-digits", task, replace(eval_config, output_dir=results / "clean"), device="cpu")
    _make_noisy(eval_config.data_root)
    zeroshot("tiny-clip-digits", task, replace(eval_config, output_dir=results / "noisy"), device="cpu")
    noisy_file = results / "noisy" / "results.jsonl"  # the second run, as if of another model
    text = noisy_file.read_text()
    fingerprint = json.loads(text.splitlines()[0])["model_fingerprint"]
    noisy_file.write_text(text.replace('"model": "tiny-clip-digits"', '"model": "other-model"')
                          .replace(fingerprint, "0" * len(fingerprint)))  # another model's rows
    with pytest.raises(ClipBenchError, match=r"mnist: refused, A and B were measured on different data \(data "
                                             r"fingerprint [0-9a-f]{12} vs [0-9a-f]{12}"):
        compare("tiny-clip-digits", "other-model", results, tasks=["mnist"])
    code = main(["compare", "tiny-clip-digits", "other-model", "--results", str(results)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "measured on different data" in err
    assert "McNemar" not in err


def test_the_file_hash_memo_hits_and_misses_when_a_file_changes(tmp_path, monkeypatch):
    data_root = tmp_path / "data"
    task = get_task(_mnist(tmp_path, data_root))
    cache = tmp_path / "cache"
    hashed: list[str] = []
    real = dfp.sha256_file
    monkeypatch.setattr(dfp, "sha256_file", lambda p: hashed.append(os.path.basename(p)) or real(p))

    def fingerprint(cache_dir: Path | None = cache) -> str:
        return dfp.split_fingerprint(task, None, "test", data_root, cache_dir)[0]

    first = fingerprint()
    assert sorted(hashed) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]  # exactly the files it reads
    assert fingerprint() == first and len(hashed) == 2  # memoised: no file content read again
    assert fingerprint(None) == first and len(hashed) == 4  # without a cache dir every file is hashed
    images = data_root / "mnist" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    content = bytearray(images.read_bytes())
    content[-1] ^= 0xFF  # one pixel, same size ...
    images.write_bytes(bytes(content))
    os.utime(images, (HOUR_AGO, HOUR_AGO))  # ... and the old mtime (as a copy that keeps timestamps leaves it)
    changed = fingerprint()
    assert hashed[4:] == ["t10k-images-idx3-ubyte"] and changed != first
    assert fingerprint() == changed and len(hashed) == 5
    # any file: another size (old mtime kept), or only another mtime, is hashed again
    other = tmp_path / "annotations.txt"
    other.write_text("a")
    store = dfp.open_store(cache)
    assert dfp.file_hashes([other], store) == [(1, real(other))] and hashed[5:] == ["annotations.txt"]
    dfp.file_hashes([other], store)
    assert len(hashed) == 6
    mtime = other.stat().st_mtime_ns
    other.write_text("ab")
    os.utime(other, ns=(mtime, mtime))
    assert dfp.file_hashes([other], store) == [(2, real(other))] and len(hashed) == 7
    os.utime(other, ns=(mtime - 10**9, mtime - 10**9))
    dfp.file_hashes([other], store)
    assert len(hashed) == 8
    store.close()


def test_a_run_fingerprints_each_split_once(tmp_path, eval_config, monkeypatch):
    task = _mnist(tmp_path, eval_config.data_root)
    calls: list[int] = []
    real = dfp.fingerprint_dataset
    monkeypatch.setattr(dfp, "fingerprint_dataset", lambda *a, **k: calls.append(1) or real(*a, **k))
    run_sweep([ModelEntry("tiny-clip-digits")], [task], ["zeroshot"], eval_config, device="cpu", echo=lambda s: None)
    run_sweep([ModelEntry("tiny-clip-digits")], [task], ["zeroshot"], eval_config, device="cpu", echo=lambda s: None)
    assert len(calls) == 2  # one per sweep: identity check, features and rows share it


def test_probe_rows_carry_the_fingerprints_of_the_data_they_learn_from_and_are_scored_on(tmp_path, eval_config):
    task = _mnist(tmp_path, eval_config.data_root)
    cfg = replace(eval_config, output_dir=None)
    fast = ProbeConfig(max_iter=20, steps_per_decade=1, n_threads=1)  # the rows' identity is the point, not C
    first = main_row(linprobe("tiny-clip-digits", task, cfg, device="cpu", probe=fast))
    raw = eval_config.data_root / "mnist" / "MNIST" / "raw"
    labels = np.frombuffer((raw / "train-labels-idx1-ubyte").read_bytes()[8:], np.uint8)
    write_idx(raw / "train-labels-idx1-ubyte", np.roll(labels, 1))  # other training labels, same test split
    second = main_row(linprobe("tiny-clip-digits", task, cfg, device="cpu", probe=fast))
    assert second["extra"]["data_fingerprint"] == first["extra"]["data_fingerprint"]
    assert second["extra"]["train_data_fingerprint"] != first["extra"]["train_data_fingerprint"]
    assert second["result_id"] != first["result_id"]


def _loader_classes() -> set[type]:
    """Every dataset class of the shipped loaders (their modules imported)."""
    for name in LOADERS.names():
        LOADERS.get(name)
    found, todo = set(), [LabeledImages]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("clip_bench.loaders"):
                found.add(sub)
            todo.append(sub)
    return found


def test_every_shipped_loader_declares_the_files_it_reads():
    classes = _loader_classes()
    assert len(classes) >= 10
    undeclared = [c.__name__ for c in classes if c.data_files is LabeledImages.data_files]
    assert not undeclared, f"these datasets fall back to hashing their whole source folder: {undeclared}"
    # torchvision classes named by a shipped task are listed with the files besides their images they read
    used = set()
    for path in data_dir("tasks").glob("*.yaml"):
        if path.stem == "collections":
            continue
        for source in get_task(str(path)).sources.values():
            if source.loader == "torchvision":
                used.add(source.args["dataset"])
    assert used and not used - set(DATASET_FILES), sorted(used - set(DATASET_FILES))


def test_loaded_splits_name_exactly_the_files_they_read(tmp_path, eval_config):
    task = get_task(_mnist(tmp_path, eval_config.data_root))
    data = load_split(task, None, "test", eval_config.data_root)
    root = eval_config.data_root / "mnist"
    assert sorted(Path(p).relative_to(root).as_posix() for p in data.data_files()) == [
        "MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"]
    digits = load_split(get_task("digits"), None, "test", eval_config.data_root)
    assert digits.data_files() == [] and len(digits.memory_digest()) == 64  # built in memory: its array is hashed


def test_a_reordered_class_list_is_other_data_not_a_cache_hit(tmp_path, eval_config):
    """An ImageFolder task maps folders to labels by its class list: reordering it pairs other images with
    each label, with the same files and the same label counts. The cache must not serve the old order."""
    names = [str(d) for d in range(10)]
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"classnames": names, "templates": ['a photo of the number: "{}".']}))
    task = tmp_path / "folder_digits.yaml"
    task.write_text(f"name: folder_digits\nversion: 1\nprompts: {prompts}\nmetric: accuracy\nsplits: [test]\n"
                    "sources:\n  local:\n    loader: imagefolder\n    path: folder_digits\n")
    write_digit_folder(eval_config.data_root / "folder_digits" / "test", per_class=4)
    first = main_row(zeroshot("tiny-clip-digits", str(task), eval_config, device="cpu"))
    names[3], names[5] = names[5], names[3]  # the class list in another order: folder "5" is now label 3
    prompts.write_text(json.dumps({"classnames": names, "templates": ['a photo of the number: "{}".']}))
    second = main_row(zeroshot("tiny-clip-digits", str(task), eval_config, device="cpu"))
    assert second["extra"]["data_fingerprint"] != first["extra"]["data_fingerprint"]
    assert second["value"] == _fresh_value(str(task), eval_config) == first["value"]


def test_parquet_cells_that_name_image_files_put_those_files_in_the_fingerprint(tmp_path, eval_config):
    """`datasets`' to_parquet of a dataset built from image files stores each image as a path, not bytes: the
    images are then read from those files, and another image there is other data, never a cache hit."""
    import datasets

    images, labels = digits_rgb("test", 32)
    folder = tmp_path / "image_files"
    folder.mkdir()
    for i, image in enumerate(images[:60]):
        (folder / f"{i}.png").write_bytes(encode(image, "png"))
    ds = datasets.Dataset.from_dict({"image": [str(folder / f"{i}.png") for i in range(60)],
                                     "label": labels[:60].tolist()}).cast_column("image", datasets.Image())
    out = eval_config.data_root / "digits_parquet" / "test.parquet"
    out.parent.mkdir(parents=True)
    ds.to_parquet(str(out))
    task = tmp_path / "digits_parquet.yaml"
    task.write_text("name: digits_parquet\nversion: 1\nprompts: digits\nmetric: accuracy\nsplits: [test]\n"
                    "sources:\n  hf:\n    loader: hf_datasets\n    path: digits_parquet\n")
    first = main_row(zeroshot("tiny-clip-digits", str(task), eval_config, device="cpu"))
    rng = np.random.default_rng(0)
    for i in range(60):  # other images in the files the cells name; the parquet file is unchanged
        (folder / f"{i}.png").write_bytes(encode(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "png"))
    second = main_row(zeroshot("tiny-clip-digits", str(task), eval_config, device="cpu"))
    assert second["extra"]["data_fingerprint"] != first["extra"]["data_fingerprint"]
    assert second["value"] == _fresh_value(str(task), eval_config) < first["value"] - 30
    (folder / "7.png").unlink()
    with pytest.raises(ClipBenchError, match=r"1 of the 60 images that the image cells name by path are missing"):
        load_split(get_task(str(task)), None, "test", eval_config.data_root)


def test_compare_refuses_probes_trained_on_different_data(tmp_path, eval_config):
    """Two linear probes scored on the same test images but fitted to other training labels differ by their
    training data as much as by their models: compare never pairs them."""
    task = _mnist(tmp_path, eval_config.data_root)
    results = tmp_path / "all"
    fast = ProbeConfig(max_iter=20, steps_per_decade=1, n_threads=1)
    linprobe("tiny-clip-digits", task, replace(eval_config, output_dir=results / "a"), device="cpu", probe=fast)
    raw = eval_config.data_root / "mnist" / "MNIST" / "raw"
    labels = np.frombuffer((raw / "train-labels-idx1-ubyte").read_bytes()[8:], np.uint8)
    write_idx(raw / "train-labels-idx1-ubyte", np.roll(labels, 1))  # other training labels, same test split
    linprobe("tiny-clip-digits", task, replace(eval_config, output_dir=results / "b"), device="cpu", probe=fast)
    other = results / "b" / "results.jsonl"  # the second run, as if of another model
    text = other.read_text()
    fingerprint = json.loads(text.splitlines()[0])["model_fingerprint"]
    other.write_text(text.replace('"model": "tiny-clip-digits"', '"model": "other-model"')
                     .replace(fingerprint, "0" * len(fingerprint)))
    with pytest.raises(ClipBenchError, match=r"mnist: refused, A and B were trained on different data \(train data "
                                             r"fingerprint [0-9a-f]{12} vs [0-9a-f]{12}"):
        compare("tiny-clip-digits", "other-model", results, tasks=["mnist"], protocol="linear_probe")
