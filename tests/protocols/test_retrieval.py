"""Retrieval tasks end to end with the tiny CLIP on digit fixtures in the real formats (clip-benchmark
retrieval WebDataset, Karpathy JSON), plus the catalogue, CLI, sweep, caches and loader errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import fixture_task
from retrieval_fixtures import RECALL_METRICS, write_karpathy, write_retrieval_wds

from clip_bench import zeroshot
from clip_bench.cache.text import TextEmbeddingCache
from clip_bench.cli.app import main
from clip_bench.loaders import load_split
from clip_bench.metrics.retrieval import flatten_captions, l2_normalize
from clip_bench.models.resolve import ModelHandle
from clip_bench.models.text_encoder import encode_prompts
from clip_bench.protocols.runner import get_features
from clip_bench.protocols.sweep import ModelEntry, run_sweep
from clip_bench.results.leaderboard import HEAD, protocol_table
from clip_bench.results.outcomes import load_for_row
from clip_bench.results.rows import read_rows
from clip_bench.tasks.catalog import expand_tasks, get_task
from clip_bench.tasks.spec import task_kind
from clip_bench.util.errors import DataNotFoundError


@pytest.fixture
def flickr(tmp_path, eval_config, digit_set):
    """The shipped flickr30k task (minus its full-size counts) with both sources written from the digits."""
    images, _, captions = digit_set
    write_retrieval_wds(eval_config.data_root / "wds_flickr30k", "test", images, captions, shard_size=20)
    write_karpathy(eval_config.data_root / "flickr30k", images, captions)
    return fixture_task("flickr30k", tmp_path)


def by_metric(rows):
    return {r["metric"]: r for r in rows}


def brute_force_recalls(image_features, text_features, text_image):
    scores = l2_normalize(image_features) @ text_features.T
    out = {}
    for k in (1, 5, 10):  # stable descending sort = the documented tie rule
        top_txt = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out[f"text_retrieval_recall@{k}"] = 100 * np.mean([np.any(text_image[t] == i) for i, t in enumerate(top_txt)])
        top_img = np.argsort(-scores.T, axis=1, kind="stable")[:, :k]
        out[f"image_retrieval_recall@{k}"] = 100 * np.mean([text_image[t] in top for t, top in enumerate(top_img)])
    return out


def test_shipped_retrieval_tasks_and_collection():
    assert expand_tasks(["retrieval"]) == ["flickr30k", "mscoco", "flickr8k"]
    for name, n_images in (("flickr30k", 1000), ("mscoco", 5000), ("flickr8k", 1000)):
        task = get_task(name)
        assert task_kind(task) == "retrieval" and task.metric == "mean_recall"
        assert set(task.sources) == {"wds", "karpathy"}
        assert all(s.expected == {"test": n_images} for s in task.sources.values())
    assert get_task("mscoco").sources["wds"].args["repo"] == "clip-benchmark/wds_mscoco_captions"
    assert task_kind(get_task("digits")) == "classification"


def test_wds_and_karpathy_fixtures_end_to_end(flickr, digit_set, eval_config, tiny_model):
    _, _, captions = digit_set
    rows_wds = zeroshot(tiny_model, flickr, eval_config, source="wds")
    rows_kp = zeroshot(tiny_model, flickr, eval_config, source="karpathy")
    wds, kp = by_metric(rows_wds), by_metric(rows_kp)
    assert list(wds) == [*RECALL_METRICS, "mean_recall"]
    assert [r["metric"] for r in rows_wds if r["is_main"]] == ["mean_recall"]
    # lossless webp and png hold the same pixels: both layouts give the same numbers
    assert {m: r["value"] for m, r in wds.items()} == {m: r["value"] for m, r in kp.items()}
    main = wds["mean_recall"]
    assert main["protocol"] == "retrieval" and main["source"] == "wds" and main["split"] == "test"
    assert main["model_fingerprint"] and main["task_version"] == 1 and main["date"]
    assert main["extra"]["n_images"] == 50 and main["extra"]["n_captions"] == 99
    assert wds["text_retrieval_recall@1"]["n"] == 50 and wds["image_retrieval_recall@1"]["n"] == 99
    # chance: an image's 1-3 true captions among 99, a caption's one image among 50; the tiny CLIP reads
    # the digit (5 images per digit, so about 1 in 5 at k = 1 and nearly all by k = 10)
    assert wds["text_retrieval_recall@1"]["value"] > 5 * 100 * 2 / 99
    assert wds["image_retrieval_recall@1"]["value"] > 5 * 100 / 50
    assert wds["text_retrieval_recall@10"]["value"] > 80 and wds["image_retrieval_recall@10"]["value"] > 80
    assert main["value"] > 50
    # the rows equal a brute-force recall from the same image features and directly encoded captions
    feats = get_features(ModelHandle.of(tiny_model), get_task(flickr), "test", eval_config)
    texts, text_image = flatten_captions(captions, feats.labels)
    ref = brute_force_recalls(feats.features, encode_prompts(tiny_model, texts), text_image)
    for m in RECALL_METRICS:
        assert wds[m]["value"] == pytest.approx(ref[m], abs=1e-9), m
    # every row has its 95% interval and per-query outcomes that reproduce it (checked on reading)
    for m, row in wds.items():
        out = load_for_row(row, eval_config.output_dir)
        assert row["ci_low"] <= row["value"] <= row["ci_high"] and out.recompute() == row["value"], m
        assert row["ci_method"] == ("wilson" if m.startswith("text_") else "bootstrap-cluster-1000"), m
        # the same captions, but the images are read from other files (shards vs image files): other data, so
        # the two sources' test sets are never paired (their decoded pixels need not be equal)
        assert out.sample_hash != load_for_row(kp[m], eval_config.output_dir).sample_hash
        assert row["extra"]["data_fingerprint"] != kp[m]["extra"]["data_fingerprint"]
    assert wds["text_retrieval_recall@1"]["outcomes"] != kp["text_retrieval_recall@1"]["outcomes"]  # another source
    assert 2 < main["value"] - main["ci_low"] < 10 and 2 < main["ci_high"] - main["value"] < 10


def test_second_run_reads_both_caches_and_never_loads_the_model(flickr, digit_set, eval_config, tiny_model):
    first = by_metric(zeroshot(tiny_model, flickr, eval_config))
    text_dir = TextEmbeddingCache(eval_config.cache_dir, tiny_model.fingerprint, tiny_model.tokenizer_id)
    _, missing = text_dir.lookup([c for caps in digit_set[2] for c in caps])
    assert missing == []  # every caption string is in the text cache
    handle = ModelHandle.of("tiny-clip-digits", device="cpu")
    again = by_metric(zeroshot(handle, flickr, eval_config))
    assert not handle.is_loaded
    assert {m: r["value"] for m, r in again.items()} == {m: r["value"] for m, r in first.items()}


def test_caption_template_and_limit_are_recorded(flickr, eval_config, tiny_model):
    rows = by_metric(zeroshot(tiny_model, flickr, eval_config, caption_template="a photo of {}.", limit=20))
    main = rows["mean_recall"]
    assert main["extra"]["caption_template"] == "a photo of {}." and main["extra"]["limit"] == 20
    assert main["extra"]["n_images"] == 20 and rows["text_retrieval_recall@1"]["n"] == 20
    cache = TextEmbeddingCache(eval_config.cache_dir, tiny_model.fingerprint, tiny_model.tokenizer_id)
    assert all(p.startswith("a photo of ") for p in cache._load())


def test_mixed_with_classification_leaderboard_and_sweep(flickr, eval_config, tiny_model, tmp_path):
    rows = zeroshot(tiny_model, ["digits", flickr], eval_config)
    assert {r["protocol"] for r in rows} == {"zeroshot", "retrieval"}
    board = (eval_config.output_dir / "leaderboard.csv").read_text().splitlines()
    # the fixture's flickr30k expects other counts than the shipped task: its rows are not standard and stay off
    # leaderboard.csv; as standard rows they sit beside digits
    assert board[0].split(",")[len(HEAD):] == ["digits"]  # after model, pretrained, protocol and the means
    standard = [{**r, "standard": True} for r in read_rows(eval_config.output_dir)]
    assert list(protocol_table(standard).columns[len(HEAD):]) == ["digits", "flickr30k"]
    models = [ModelEntry("tiny-clip-digits")]
    counts = run_sweep(models, [flickr, "digits"], ["zeroshot", "linprobe"], eval_config, device="cpu",
                       echo=lambda _: None)
    # both zero-shot jobs are already in the results; retrieval has no linear-probe job; digits' probe runs
    assert counts == {"done_before": 2, "ran": 1, "failed": 0}


def test_cli_zeroshot_json_with_caption_template(flickr, eval_config, capsys):
    code = main(["zeroshot", "--model", "tiny-clip-digits", "--task", flickr, "--data-root", str(eval_config.data_root),
                 "--cache-dir", str(eval_config.cache_dir), "--output-dir", str(eval_config.output_dir),
                 "--workers", "0", "--device", "cpu", "--format", "json", "--quiet", "--caption-template", "{}"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 7 and rows[-1]["metric"] == "mean_recall" and rows[-1]["extra"]["caption_template"] == "{}"
    assert len(read_rows(eval_config.output_dir)) == 7


def test_retrieval_wds_download_and_errors(monkeypatch, flickr, digit_set, eval_config, tmp_path):
    import huggingface_hub

    images, _, captions = digit_set
    task = get_task(flickr)
    root = eval_config.data_root / "wds_flickr30k"
    with pytest.raises(DataNotFoundError, match="no WebDataset shards"):
        load_split(task, "wds", "test", tmp_path / "empty")
    calls = []

    def fake_snapshot_download(repo_id, repo_type, local_dir, allow_patterns, revision=None):
        calls.append((repo_id, allow_patterns))
        write_retrieval_wds(Path(local_dir), "test", images[:7], captions[:7])
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    data = load_split(task, "wds", "test", tmp_path / "fetched", download=True)
    assert len(data) == 7 and data.captions == captions[:7]
    assert calls == [("clip-benchmark/wds_flickr30k", ["test/*", "dataset_type.txt"])]
    (root / "dataset_type.txt").write_text("classification\n")
    with pytest.raises(DataNotFoundError, match="not 'retrieval'"):
        load_split(task, "wds", "test", eval_config.data_root)
    empty = [list(c) for c in captions]
    empty[4] = []
    write_retrieval_wds(root, "test", images, empty)
    with pytest.raises(DataNotFoundError, match="1 images have no caption"):
        load_split(task, "wds", "test", eval_config.data_root)


def test_karpathy_layout_errors_and_expected_counts(flickr, digit_set, eval_config, tmp_path):
    images, _, captions = digit_set
    task = get_task(flickr)
    data = load_split(task, "karpathy", "test", eval_config.data_root)
    assert len(data) == 50 and data.captions == captions  # the 3 train entries are left out
    next((eval_config.data_root / "flickr30k" / "flickr30k-images").glob("10*.png")).unlink()
    with pytest.raises(DataNotFoundError, match="1 of the 50 test images are missing"):
        load_split(task, "karpathy", "test", eval_config.data_root)
    # the shipped task: 1,000 images and 5,000 captions expected, so a 50-image copy is an error, never a subset
    with pytest.raises(DataNotFoundError, match="has 50 samples but 1000 are expected"):
        load_split(get_task("flickr30k"), "wds", "test", eval_config.data_root)
    # COCO's layout: entries carry filepath (val2014)
    write_karpathy(tmp_path / "coco" / "mscoco", images[:6], captions[:6], annotations="dataset_coco.json",
                   image_dir=".", filepath="val2014")
    coco = load_split(get_task(fixture_task("mscoco", tmp_path)), "karpathy", "test", tmp_path / "coco")
    assert coco.describe(0).endswith("mscoco/val2014/1000.png") and coco.captions == captions[:6]


def _noisy_tiny(tmp_path: Path, scale: float) -> Path:
    """The tiny CLIP's weights with Gaussian noise (`scale` × each tensor's std) added: a weaker model."""
    import torch
    from safetensors.torch import load_file, save_file

    from clip_bench.util.resources import assets_dir

    w = load_file(str(assets_dir() / "tiny_clip" / "tiny-clip-digits.safetensors"))
    g = torch.Generator().manual_seed(0)
    noisy = {k: v + (scale * v.float().std() * torch.randn(v.shape, generator=g)).to(v.dtype)
             if v.is_floating_point() and v.numel() > 1 else v for k, v in w.items()}
    path = tmp_path / "noisy.safetensors"
    save_file(noisy, str(path))
    return path


def test_compare_retrieval_rows(flickr, eval_config, tiny_model, tmp_path, capsys, monkeypatch):
    """compare on retrieval: the tiny CLIP beats a noisy copy; with and without a caption template are paired on
    the same queries; identical outcomes are never significant; another --limit is refused; old rows backfill."""
    import yaml

    import clip_bench.models.resolve as models
    from clip_bench.protocols.replay import backfill
    from clip_bench.report.compare import compare, compare_outcomes
    from clip_bench.util.errors import ClipBenchError

    base = by_metric(zeroshot(tiny_model, flickr, eval_config))
    templ = by_metric(zeroshot(tiny_model, flickr, replace(eval_config, output_dir=tmp_path / "templ"),
                               caption_template="a photo of {}."))
    for m, row in base.items():
        oa, ob = load_for_row(row, eval_config.output_dir), load_for_row(templ[m], tmp_path / "templ")
        assert oa.sample_hash == ob.sample_hash  # the template changes the queries' text, not the test set
        diff, lo, hi, test, p, _, _ = compare_outcomes(oa, ob)
        assert diff == pytest.approx(row["value"] - templ[m]["value"]) and lo <= diff <= hi
        assert compare_outcomes(oa, oa)[4] == 1.0
    noisy = _noisy_tiny(tmp_path, 0.5)
    zeroshot("tiny-clip-digits", flickr, eval_config, pretrained=str(noisy), device="cpu")
    c = compare("tiny-clip-digits:builtin", f"tiny-clip-digits:{noisy}", eval_config.output_dir, protocol="retrieval")
    assert [t.task for t in c.tasks] == ["flickr30k"] and c.tasks[0].metric == "mean_recall"
    t = c.tasks[0]
    assert t.test == "paired cluster bootstrap (1000)" and t.n == 149 and t.result == "A better" and t.p_value < 0.01, t
    per_metric = {m: compare("tiny-clip-digits:builtin", f"tiny-clip-digits:{noisy}", eval_config.output_dir,
                             metric=m).tasks[0] for m in ("text_retrieval_recall@5", "image_retrieval_recall@5")}
    assert (per_metric["text_retrieval_recall@5"].test == "McNemar exact"
            and per_metric["text_retrieval_recall@5"].n == 50)
    assert per_metric["image_retrieval_recall@5"].test.startswith("paired cluster bootstrap")
    assert main(["compare", "tiny-clip-digits:builtin", f"tiny-clip-digits:{noisy}", "--results",
                 str(eval_config.output_dir), "--task", "flickr30k"]) == 0  # the default (zeroshot) includes retrieval
    assert "flickr30k  mean_recall  149" in capsys.readouterr().out
    zeroshot("tiny-clip-digits", flickr, eval_config, pretrained=str(noisy), device="cpu", limit=30)
    with pytest.raises(ClipBenchError, match=r"not evaluated on the same test samples \(--limit None vs 30, "
                                             r"149 vs \d+ test samples, captions"):
        compare("tiny-clip-digits:builtin", f"tiny-clip-digits:{noisy}", eval_config.output_dir, tasks=["flickr30k"])
    # a retrieval row written before rows carried outcomes: rebuilt from the caches (found by task name), no model
    folder = tmp_path / "mytasks"
    folder.mkdir()
    raw = yaml.safe_load(Path(flickr).read_text(encoding="utf-8"))
    (folder / "digit_captions.yaml").write_text(yaml.safe_dump({**raw, "name": "digit_captions"}, sort_keys=False))
    monkeypatch.setenv("CLIP_BENCH_TASKS", str(folder))
    row = by_metric(zeroshot(tiny_model, "digit_captions", replace(eval_config, output_dir=tmp_path / "templ2"),
                             caption_template="a photo of {}."))["mean_recall"]
    old = {k: v for k, v in row.items() if k not in ("ci_low", "ci_high", "ci_method", "outcomes")}
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("backfill loaded the model"))
    out = backfill(old, tmp_path / "old", eval_config.cache_dir, eval_config.data_root)
    assert out.recompute() == old["value"] and out.sample_hash == load_for_row(row, tmp_path / "templ2").sample_hash
    with pytest.raises(ClipBenchError, match=r"not in the\s+cache .*--caption-template 'a photo of \{\}\.'"):
        backfill(old, tmp_path / "old", tmp_path / "empty-cache", eval_config.data_root)
    other = {**old, "task_hash": "0" * 16, "extra": {**old["extra"], "task_hash": "0" * 16}}
    with pytest.raises(ClipBenchError, match="another definition of task 'digit_captions'"):
        backfill(other, tmp_path / "old", eval_config.cache_dir, eval_config.data_root)


@pytest.mark.parametrize("damage, field", [
    (lambda d: d["images"][4]["sentences"][1].update(raw=5),
     "images[4].sentences[1].raw should be a caption string but is 5"),
    (lambda d: d["images"][3]["sentences"][0].pop("raw"),
     "images[3].sentences[0].raw should be a caption string but is missing"),
    (lambda d: d["images"][5].update(sentences="a digit"), 'images[5].sentences should be a list but is "a digit"'),
    (lambda d: d["images"][3]["sentences"].__setitem__(0, "a digit"), "images[3].sentences[0] should be an object"),
    (lambda d: d["images"][6].update(filename=7), "images[6].filename should be a file name but is 7"),
    (lambda d: d["images"][6].update(filename=""), "images[6].filename should be a file name"),
    (lambda d: d["images"][7].update(filepath=["val2014"]), "images[7].filepath should be a folder name"),
    (lambda d: d["images"][1].pop("split"), "images[1].split should be a split name but is missing"),
    (lambda d: d["images"].__setitem__(2, None), "images[2] should be an object but is null"),
    (lambda d: d.update(images={"0": {}}), '"images" should be a list but is {"0": {}} (a JSON object)'),
], ids=["raw-number", "raw-missing", "sentences-string", "sentence-string", "filename-number", "filename-empty",
        "filepath-list", "split-missing", "entry-null", "images-object"])
def test_karpathy_file_with_a_field_of_the_wrong_type_is_one_line(flickr, eval_config, capsys, damage, field):
    """Today a "raw": 5 caption stops the run with AttributeError; each field the loader reads is checked."""
    path = eval_config.data_root / "flickr30k" / "dataset_flickr30k.json"
    data = json.loads(path.read_text())
    damage(data)
    path.write_text(json.dumps(data))
    code = main(["zeroshot", "--model", "tiny-clip-digits", "--task", flickr, "--source", "karpathy", "--data-root",
                 str(eval_config.data_root), "--no-cache", "--output-dir", str(eval_config.output_dir),
                 "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "dataset_flickr30k.json is not a Karpathy split file: " + field in err and str(path) in err, err
