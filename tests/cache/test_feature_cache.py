"""The feature cache never serves other images, damaged metadata or NaN."""

from __future__ import annotations

import errno
import json
import os
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clip_bench import zeroshot
from clip_bench.cache.features import FeatureCache
from clip_bench.config import ExtractConfig
from clip_bench.loaders.subset import subset_indices
from clip_bench.util.errors import ClipBenchError


def _entry(cache):
    (entry,) = (cache / "features").iterdir()
    return entry


def test_resume_with_another_shard_size_never_reuses_other_images(eval_config, tmp_path, monkeypatch):
    # a run with 60-image shards is killed after 4 shards (images 0..239); part 3 holds images 180..239
    import clip_bench.cache.features as features

    real, saved = features.FeatureCache.save_part, []

    def killed_after_four(self, i, *a, **k):
        if len(saved) == 4:
            raise KeyboardInterrupt
        saved.append(i)
        return real(self, i, *a, **k)

    monkeypatch.setattr(features.FeatureCache, "save_part", killed_after_four)
    with pytest.raises(KeyboardInterrupt):
        zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None,
                 extract=replace(eval_config.extract, shard_size=60))
    monkeypatch.setattr(features.FeatureCache, "save_part", real)
    part3 = json.loads((_entry(eval_config.cache_dir) / "part-00003.json").read_text())
    # resumed with 100-image shards: the last shard (images 300..359) also has 60 images, but other ones
    resumed = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None,
                       extract=replace(eval_config.extract, shard_size=100))
    clean = zeroshot("tiny-clip-digits", "digits", replace(eval_config, cache_dir=tmp_path / "clean"), device="cpu",
                     output_dir=None)
    assert [r["value"] for r in resumed] == [r["value"] for r in clean]
    assert resumed[0]["value"] == pytest.approx(91.67, abs=0.005)
    assert np.array_equal(np.load(_entry(eval_config.cache_dir) / "features.npy"),
                          np.load(_entry(tmp_path / "clean") / "features.npy"))
    assert not list(_entry(eval_config.cache_dir).glob("part-*"))  # no orphan shard of the first plan
    assert (part3.get("first"), part3.get("last"), part3.get("count"), part3.get("shard_size")) == (180, 239, 60, 60)


@pytest.mark.parametrize("meta", [[], {"key": None}, {"rows": 3}, "text", 12])
def test_meta_json_of_the_wrong_shape_is_discarded_and_recomputed(eval_config, meta):
    first = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None)
    meta_path = _entry(eval_config.cache_dir) / "meta.json"
    meta_path.write_text(json.dumps(meta))
    again = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None)
    assert [r["value"] for r in again] == [r["value"] for r in first]
    assert isinstance(json.loads(meta_path.read_text()), dict)  # rewritten


def test_limit_draws_a_stratified_subset():
    labels = np.repeat(np.arange(10), [30, 40, 50, 20, 60, 30, 40, 30, 30, 30])
    idx = subset_indices(len(labels), 36, labels=labels)
    counts = np.bincount(labels[idx], minlength=10)
    expected = 36 * np.bincount(labels) / len(labels)
    assert np.all(np.abs(counts - expected) <= 1)
    assert np.array_equal(idx, subset_indices(len(labels), 36, labels=labels))  # the same every run
    assert np.all(np.bincount(labels[subset_indices(len(labels), 10, labels=labels)], minlength=10) == 1)
    assert np.array_equal(subset_indices(20, None), np.arange(20))


def test_limit_rows_record_the_sampling_rule(eval_config):
    rows = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", limit=20, output_dir=None)
    assert rows[0]["extra"]["subset_rule"] == "stratified-v1" and rows[0]["n"] == 20


def test_finalize_streams_shards(tmp_path):
    """Merging keeps about one shard in memory, not all shards plus the merged array (~3x)."""
    cache = FeatureCache(tmp_path, {"k": 1})
    n_shards, rows, dim = 8, 2000, 256
    shards = [np.arange(i * rows, (i + 1) * rows) for i in range(n_shards)]
    data = np.random.default_rng(0).standard_normal((n_shards * rows, dim)).astype(np.float16)
    for i, idx in enumerate(shards):
        cache.save_part(i, data[idx], idx % 10, 0, idx, rows)
    total = n_shards * rows * dim * 2
    tracemalloc.start()
    feats = cache.finalize(shards, {})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.array_equal(feats.features, data) and np.array_equal(feats.labels, np.arange(len(data)) % 10)
    assert peak < 0.5 * total, f"finalize peaked at {peak / total:.2f}x the feature size"
    assert not list(cache.dir.glob("part-*"))


def _nan_checkpoint(tmp_path, prefix=""):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from clip_bench.util.resources import assets_dir

    cfg = tmp_path / "tiny.json"
    shutil.copy(assets_dir() / "tiny_clip" / "tiny-clip-digits.json", cfg)
    state = load_file(str(assets_dir() / "tiny_clip" / "tiny-clip-digits.safetensors"))
    for k, v in state.items():
        if v.is_floating_point() and k.startswith(prefix):
            state[k] = torch.full_like(v, float("nan"))
    ckpt = tmp_path / "nan.safetensors"
    save_file(state, str(ckpt))
    return str(cfg), str(ckpt)


def test_nan_checkpoint_is_an_error_not_a_row(tmp_path, eval_config):
    cfg, ckpt = _nan_checkpoint(tmp_path)
    with pytest.raises(ClipBenchError, match=r"image features .* non-finite .*NaN"):
        zeroshot(cfg, "digits", eval_config, pretrained=ckpt, device="cpu")
    assert not (eval_config.output_dir / "results.jsonl").exists() or not (
        eval_config.output_dir / "results.jsonl").read_text().strip()
    assert not list((eval_config.cache_dir / "features").glob("*/features.npy"))  # nothing cached


def test_nan_text_tower_is_an_error_not_a_row(tmp_path, eval_config):
    cfg, ckpt = _nan_checkpoint(tmp_path, prefix="text_projection")
    with pytest.raises(ClipBenchError, match=r"text embeddings .* non-finite"):
        zeroshot(cfg, "digits", eval_config, pretrained=ckpt, device="cpu",
                 extract=ExtractConfig(workers=0, quiet=True))
    assert not list((eval_config.cache_dir / "text").glob("*/*.npy"))


class _FillsUp:
    """A file whose writes fail with ENOSPC once `room` bytes are written, like a disk that fills up."""

    def __init__(self, fh, room):
        self.fh, self.room = fh, room

    def write(self, data):
        size = memoryview(data).nbytes
        if size > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= size
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def _merged_file(fd):
    """Whether `fd` is open on the temporary file of a merged features.npy."""
    return Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".features.npy.")


def _fallocate_fails(code):
    real = getattr(os, "posix_fallocate", None)

    def fallocate(fd, offset, size):
        if _merged_file(fd):
            raise OSError(code, os.strerror(code))
        return real(fd, offset, size)

    return fallocate


def _count_images(monkeypatch):
    from clip_bench.loaders.base import ArrayImages

    opened, real = [], ArrayImages.load_image
    monkeypatch.setattr(ArrayImages, "load_image", lambda self, i: opened.append(i) or real(self, i))
    return opened


@pytest.mark.skipif(not (hasattr(os, "posix_fallocate") and os.path.isdir("/proc/self/fd")),
                    reason="needs posix_fallocate and /proc/self/fd")
@pytest.mark.parametrize("fault", ["reserving the space", "writing part-way"])
def test_full_disk_while_merging_is_one_error_and_the_next_run_resumes(eval_config, monkeypatch, fault):
    import builtins

    import clip_bench.util.io as io_utils

    with monkeypatch.context() as m:
        if fault == "reserving the space":
            m.setattr(os, "posix_fallocate", _fallocate_fails(errno.ENOSPC))
        else:  # a file system that cannot reserve space: the disk fills up while the merged file is written
            m.setattr(os, "posix_fallocate", _fallocate_fails(errno.EOPNOTSUPP))
            real_open = builtins.open

            def filling_open(path, mode="r", *a, **k):
                fh = real_open(path, mode, *a, **k)
                return _FillsUp(fh, 20_000) if Path(path).name.startswith(".features.npy.") and "w" in mode else fh

            m.setattr(io_utils, "open", filling_open, raising=False)
        with pytest.raises(ClipBenchError) as err:
            zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None)
    entry = _entry(eval_config.cache_dir)
    msg = str(err.value)
    assert "\n" not in msg and f"cannot write the feature cache at {entry / 'features.npy'} (No space left" in msg
    assert not [p.name for p in entry.iterdir() if p.name.endswith(".tmp")]  # nothing fills the disk
    assert not (entry / "meta.json").exists() and not (entry / "features.npy").exists()
    assert list(entry.glob("part-*.json"))  # the encoded shards are kept
    opened = _count_images(monkeypatch)
    rows = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None)
    assert opened == []  # the next run merges the kept shards, encoding nothing again
    assert rows[0]["value"] == pytest.approx(91.67, abs=0.005)
    assert not [p.name for p in entry.iterdir() if p.name.startswith("part-") or p.name.endswith(".tmp")]


def test_temp_files_of_a_dead_writer_are_removed_before_the_next_merge(eval_config, monkeypatch):
    import clip_bench.cache.features as features

    real_save, real_finalize = features.FeatureCache.save_part, features.FeatureCache.finalize

    def killed_after_two(self, i, *a, **k):
        if i == 2:
            raise KeyboardInterrupt
        return real_save(self, i, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(features.FeatureCache, "save_part", killed_after_two)
        with pytest.raises(KeyboardInterrupt):
            zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None,
                     extract=replace(eval_config.extract, shard_size=100))
    entry = _entry(eval_config.cache_dir)
    stale = [entry / ".features.npy.k1ll3d.tmp", entry / ".meta.json.k1ll3d.tmp", entry / ".part-00002.npy.x.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 100_000)  # what a process that died mid-write leaves (on a full disk: its space)
    left_at_merge = []

    def finalize(self, *a, **k):
        left_at_merge.extend(p.name for p in stale if p.exists())
        return real_finalize(self, *a, **k)

    monkeypatch.setattr(features.FeatureCache, "finalize", finalize)
    rows = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None,
                    extract=replace(eval_config.extract, shard_size=100))
    assert rows[0]["value"] == pytest.approx(91.67, abs=0.005)
    assert left_at_merge == []  # their space is free before the merge needs it
    assert not [p.name for p in entry.iterdir() if p.name.endswith(".tmp")]


def test_meta_json_that_is_a_directory_is_a_damaged_entry(eval_config, monkeypatch, capsys):
    zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None)
    entry = _entry(eval_config.cache_dir)
    (entry / "meta.json").unlink()
    (entry / "meta.json").mkdir()
    (entry / "meta.json" / "x").write_text("?")
    opened = _count_images(monkeypatch)
    rows = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None)
    assert len(opened) == 360 and rows[0]["value"] == pytest.approx(91.67, abs=0.005)  # recomputed
    assert f"damaged feature-cache entry {entry} (meta.json is not a file)" in capsys.readouterr().err
    assert json.loads((entry / "meta.json").read_text())["rows"] == 360


@pytest.mark.parametrize("damage", ["features.npy truncated", "labels.npy garbage", "a file where the entry is"])
def test_a_damaged_entry_is_said_removed_and_recomputed(eval_config, monkeypatch, capsys, damage):
    zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None)
    entry = _entry(eval_config.cache_dir)
    if damage == "features.npy truncated":
        data = (entry / "features.npy").read_bytes()
        (entry / "features.npy").write_bytes(data[: len(data) // 2])
    elif damage == "labels.npy garbage":
        (entry / "labels.npy").write_bytes(b"not an array")
    else:
        import shutil

        shutil.rmtree(entry)
        entry.write_text("a stray file named like the entry")
    capsys.readouterr()
    opened = _count_images(monkeypatch)
    rows = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None)
    assert len(opened) == 360 and rows[0]["value"] == pytest.approx(91.67, abs=0.005)  # recomputed, right number
    err = capsys.readouterr().err
    assert f"damaged feature-cache entry {entry}" in err and "computed again" in err
    assert entry.is_dir() and json.loads((entry / "meta.json").read_text())["rows"] == 360


def test_shard_sidecar_that_is_a_directory_is_a_damaged_shard(eval_config, monkeypatch):
    import clip_bench.cache.features as features

    real_save = features.FeatureCache.save_part

    def killed_after_two(self, i, *a, **k):
        if i == 2:
            raise KeyboardInterrupt
        return real_save(self, i, *a, **k)

    extract = replace(eval_config.extract, shard_size=100)
    with monkeypatch.context() as m:
        m.setattr(features.FeatureCache, "save_part", killed_after_two)
        with pytest.raises(KeyboardInterrupt):
            zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None, extract=extract)
    entry = _entry(eval_config.cache_dir)
    (entry / "part-00001.json").unlink()
    (entry / "part-00001.json").mkdir()
    opened = _count_images(monkeypatch)
    rows = zeroshot("tiny-clip-digits", "digits", eval_config, device="cpu", output_dir=None, extract=extract)
    assert len(opened) == 260 and rows[0]["value"] == pytest.approx(91.67, abs=0.005)  # shard 1 encoded again
    assert json.loads((entry / "meta.json").read_text())["rows"] == 360


def test_skipped_image_in_a_batch_that_straddles_two_shards(tmp_path, eval_config):
    """A batch holding the end of one shard and a bad image of the next one: the skip belongs to the next shard.

    Before, the skip was counted in the shard being closed, whose sidecar then failed its own check and the
    merge said "changed or vanished while merging" on every run.
    """
    from dataclasses import replace

    from dataset_fixtures import write_digit_folder

    from clip_bench import zeroshot
    from clip_bench.config import ExtractConfig

    write_digit_folder(eval_config.data_root / "dg" / "test", per_class=3)
    (eval_config.data_root / "dg" / "test" / "4" / "001.png").write_bytes(b"\x89PNG not really")  # index 13
    task = tmp_path / "dg.yaml"
    task.write_text("name: dg\nversion: 1\nprompts: digits\nmetric: accuracy\nsplits: [test]\n"
                    "sources:\n  local: {loader: imagefolder, path: dg}\n")
    extract = ExtractConfig(batch_size=8, workers=0, shard_size=10, quiet=True, skip_bad_images=True)
    rows = zeroshot("tiny-clip-digits", str(task), replace(eval_config, extract=extract), device="cpu")
    assert rows[0]["n"] == 29 and rows[0]["extra"]["skipped_images"] == 1
    whole = zeroshot("tiny-clip-digits", str(task), replace(eval_config, cache_dir=None, extract=replace(
        extract, batch_size=64, shard_size=64)), device="cpu")
    assert rows[0]["value"] == whole[0]["value"]
