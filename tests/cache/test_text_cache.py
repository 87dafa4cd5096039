"""A damaged text-cache shard is detected, removed and recomputed, never used; a read-only cache is read."""

from __future__ import annotations

import errno
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from clip_bench import zeroshot
from clip_bench.cache import text as text_cache
from clip_bench.config import EvalConfig, ExtractConfig
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import save_npy_atomic, sha256_file, write_json_atomic


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """A cache holding digits' features and text embeddings for the tiny CLIP."""
    root = tmp_path_factory.mktemp("warm")
    cfg = EvalConfig(data_root=root / "data", cache_dir=root / "cache", output_dir=None,
                     extract=ExtractConfig(batch_size=128, workers=0, quiet=True))
    rows = zeroshot("tiny-clip-digits", "digits", cfg, device="cpu")
    assert rows[0]["value"] == pytest.approx(91.67, abs=0.005)
    return root / "cache"


def _rewrite(npy, arr):
    """Replace a shard's array and re-record its checksum and shape: a self-consistent but bad shard."""
    meta = npy.with_suffix(".json")
    info = json.loads(meta.read_text())
    save_npy_atomic(npy, arr)
    info.update(sha256=sha256_file(npy), shape=list(arr.shape), dtype=str(arr.dtype))
    write_json_atomic(meta, info)


def _flip_byte(npy):
    data = bytearray(npy.read_bytes())
    data[len(data) // 2] ^= 0x10
    npy.write_bytes(bytes(data))


def _nan_rows(npy):
    arr = np.load(npy)
    arr[::3] = np.nan
    _rewrite(npy, arr)


def _wrong_width(npy):
    arr = np.load(npy)[:, :7]
    _rewrite(npy, arr / np.linalg.norm(arr, axis=1, keepdims=True))


def _torn_json(npy):
    meta = npy.with_suffix(".json")
    meta.write_text(meta.read_text()[:40])


def _json_list(npy):
    npy.with_suffix(".json").write_text(json.dumps(["a", "b"]))


def _json_missing_keys(npy):
    prompts = json.loads(npy.with_suffix(".json").read_text())["prompts"]
    npy.with_suffix(".json").write_text(json.dumps({"prompts": prompts}))


@pytest.mark.parametrize("damage", [_flip_byte, _nan_rows, _wrong_width, _torn_json, _json_list, _json_missing_keys])
def test_damaged_text_shard_is_recomputed(warm_cache, tmp_path, damage, monkeypatch, capsys):
    cache = tmp_path / "cache"
    shutil.copytree(warm_cache, cache)
    (npy,) = (cache / "text").glob("*/*.npy")
    damage(npy)
    encoded = []
    import clip_bench.models.text_encoder as te

    real = te.encode_prompts
    monkeypatch.setattr("clip_bench.protocols.zeroshot_head.encode_prompts",
                        lambda lm, p, **k: encoded.extend(p) or real(lm, p, **k))
    cfg = EvalConfig(cache_dir=cache, output_dir=None, extract=ExtractConfig(workers=0, quiet=True))
    rows = zeroshot("tiny-clip-digits", "digits", cfg, device="cpu")
    assert rows[0]["value"] == pytest.approx(91.67, abs=0.005)
    assert encoded  # the damaged shard's prompts were encoded again
    # the repaired entry is used as is by the next run
    encoded.clear()
    again = zeroshot("tiny-clip-digits", "digits", replace(cfg), device="cpu")
    assert encoded == [] and again[0]["value"] == rows[0]["value"]
    assert len(list((cache / "text").glob("*/*.npy"))) == 1


def _unit_rows(n, d=8):
    arr = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    return arr / np.linalg.norm(arr, axis=1, keepdims=True)


def test_temp_files_of_a_dead_writer_are_removed_when_the_cache_is_locked(tmp_path):
    from clip_bench.cache.text import TextEmbeddingCache

    TextEmbeddingCache(tmp_path, "fp", "tok").add(["a", "b"], _unit_rows(2))
    folder = TextEmbeddingCache(tmp_path, "fp", "tok").dir
    stale = [folder / ".0123abcd.npy.k1ll3d.tmp", folder / ".0123abcd.json.k1ll3d.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 10_000)  # what a writer that died mid-write leaves
    found, missing = TextEmbeddingCache(tmp_path, "fp", "tok").lookup(["a", "b"])
    assert sorted(found) == ["a", "b"] and missing == []
    assert not [p for p in stale if p.exists()]


@pytest.mark.parametrize("name", ["0123abcd.json", "0123abcd.npy"])
def test_a_directory_named_like_a_shard_is_removed_as_damaged(tmp_path, name, capsys):
    from clip_bench.cache.text import TextEmbeddingCache

    TextEmbeddingCache(tmp_path, "fp", "tok").add(["a", "b"], _unit_rows(2))
    folder = TextEmbeddingCache(tmp_path, "fp", "tok").dir
    (folder / name).mkdir()
    (folder / name / "x").write_text("?")
    found, missing = TextEmbeddingCache(tmp_path, "fp", "tok").lookup(["a", "b"])
    assert sorted(found) == ["a", "b"] and missing == []
    assert not (folder / name).exists()  # repaired, not skipped with a warning on every run
    cache = TextEmbeddingCache(tmp_path, "fp", "tok")
    cache.add(["c"], _unit_rows(1))
    assert cache.lookup(["a", "b", "c"])[1] == []


def test_full_disk_is_one_error_that_says_so_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno
    import os

    from clip_bench.cache.text import TextEmbeddingCache
    from clip_bench.util.errors import ClipBenchError

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "posix_fallocate", full, raising=False)
        with pytest.raises(ClipBenchError) as err:
            TextEmbeddingCache(tmp_path, "fp", "tok").add(["a", "b"], _unit_rows(2))
    folder = TextEmbeddingCache(tmp_path, "fp", "tok").dir
    assert "\n" not in str(err.value)
    assert f"cannot write the text-embedding cache at {folder} (No space left on device)" in str(err.value)
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # no temporary file, no half shard
    TextEmbeddingCache(tmp_path, "fp", "tok").add(["a", "b"], _unit_rows(2))  # with space again it works
    assert TextEmbeddingCache(tmp_path, "fp", "tok").lookup(["a", "b"])[1] == []


def _read_only(monkeypatch):
    """Every lock or write in the text cache fails as on a read-only mount (EROFS, also for root)."""

    def refuse(*_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(text_cache, "file_lock", refuse)
    monkeypatch.setattr(text_cache, "save_npy_atomic", refuse)


def test_read_only_text_cache_is_read_and_a_write_is_one_clear_error(tmp_path, monkeypatch):
    cache = text_cache.TextEmbeddingCache(tmp_path, "fp", "tok")
    cache.add(["a", "b"], _unit_rows(2))
    _read_only(monkeypatch)
    found, missing = text_cache.TextEmbeddingCache(tmp_path, "fp", "tok").lookup(["a", "b", "c"])
    assert sorted(found) == ["a", "b"] and missing == ["c"]  # was: OSError traceback (only PermissionError caught)
    with pytest.raises(ClipBenchError, match=r"cannot write the text-embedding cache at .*Read-only file system"):
        text_cache.TextEmbeddingCache(tmp_path, "fp", "tok").add(["c"], _unit_rows(1))
