"""DataComp's retrieval tasks (datacomp_flickr1k, datacomp_mscoco5k) end to end with the tiny CLIP on a digit
fixture in the Hugging Face layout DataComp reads (nlphuji/*_image_text_retrieval: image + list of captions):
mean_recall@1 against a by-hand computation and CLIP_benchmark's recall, intervals, compare, download, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import fixture_task
from model_fixtures import checkpoint_folder
from retrieval_fixtures import RECALL_METRICS, hf_retrieval_dataset, write_retrieval_wds

from clip_bench import zeroshot
from clip_bench.cli.app import main
from clip_bench.loaders import load_split
from clip_bench.metrics.retrieval import flatten_captions
from clip_bench.models.resolve import ModelHandle
from clip_bench.models.text_encoder import encode_prompts
from clip_bench.protocols.runner import get_features
from clip_bench.results.outcomes import load_for_row
from clip_bench.tasks.catalog import get_task
from clip_bench.tasks.spec import task_kind
from clip_bench.util.errors import DataNotFoundError

FLICKR = "flickr_1k_test_image_text_retrieval"


@pytest.fixture
def flickr1k(tmp_path, eval_config, digit_set):
    """The shipped datacomp_flickr1k task (minus its full-size counts), its data saved with save_to_disk."""
    images, _, captions = digit_set
    hf_retrieval_dataset(images, captions).save_to_disk(str(eval_config.data_root / FLICKR / "test"))
    return fixture_task("datacomp_flickr1k", tmp_path)


def by_metric(rows):
    return {r["metric"]: r for r in rows}


def test_shipped_tasks():
    for name, repo, n in (("datacomp_flickr1k", "nlphuji/flickr_1k_test_image_text_retrieval", 1000),
                          ("datacomp_mscoco5k", "nlphuji/mscoco_2014_5k_test_image_text_retrieval", 5000)):
        task = get_task(name)
        assert task_kind(task) == "retrieval" and task.metric == "mean_recall@1"
        source = task.source()
        assert source.loader == "hf_retrieval" and source.expected == {"test": n}
        assert source.args["repo"] == repo and source.args["revision"] == "refs/convert/parquet"
    assert get_task("flickr30k").metric == "mean_recall" and get_task("mscoco").metric == "mean_recall"


def test_mean_recall_at_1_equals_a_by_hand_computation(flickr1k, digit_set, eval_config, tiny_model, tmp_path):
    _, _, captions = digit_set
    rows = by_metric(zeroshot(tiny_model, flickr1k, eval_config))
    assert list(rows) == [*RECALL_METRICS, "mean_recall@1"]  # no mean of six
    main_row = rows["mean_recall@1"]
    assert [m for m, r in rows.items() if r["is_main"]] == ["mean_recall@1"]
    assert main_row["protocol"] == "retrieval" and main_row["source"] == "hf" and main_row["n"] == 149
    assert main_row["extra"]["n_images"] == 50 and main_row["extra"]["n_captions"] == 99
    # by hand: each image's most similar caption, each caption's most similar image (first on equal scores)
    feats = get_features(ModelHandle.of(tiny_model), get_task(flickr1k), "test", eval_config)
    texts, text_image = flatten_captions(captions, feats.labels)
    img = np.asarray(feats.features, dtype=np.float64)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt = encode_prompts(tiny_model, texts).astype(np.float64)
    sims = img @ txt.T
    i2t = 100 * np.mean([text_image[int(np.argmax(sims[i]))] == i for i in range(len(img))])
    t2i = 100 * np.mean([int(np.argmax(sims[:, t])) == text_image[t] for t in range(len(texts))])
    assert rows["text_retrieval_recall@1"]["value"] == pytest.approx(i2t, abs=1e-9)
    assert rows["image_retrieval_recall@1"]["value"] == pytest.approx(t2i, abs=1e-9)
    assert main_row["value"] == pytest.approx((i2t + t2i) / 2, abs=1e-9)
    # CLIP_benchmark's recall (what DataComp's retr_eval.py calls) on the same scores
    import torch
    from clip_benchmark.metrics.zeroshot_retrieval import recall_at_k

    scores = torch.from_numpy(txt @ img.T)
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(texts)), torch.from_numpy(text_image)] = True
    peer_t2i = 100 * (recall_at_k(scores, positive, 1) > 0).float().mean().item()
    peer_i2t = 100 * (recall_at_k(scores.T, positive.T, 1) > 0).float().mean().item()
    assert main_row["value"] == pytest.approx(0.5 * (peer_i2t + peer_t2i), abs=1e-4)
    # the tiny CLIP reads the digits: above chance (2/99 and 1/50) in both directions
    assert i2t > 5 * 100 * 2 / 99 and t2i > 5 * 100 / 50
    # the same images and captions as the paper's flickr30k (clip-benchmark WebDataset, lossless webp): the same
    # six recalls, and that task's rows keep their mean of six
    images, _, _ = digit_set
    write_retrieval_wds(eval_config.data_root / "wds_flickr30k", "test", images, captions)
    paper = by_metric(zeroshot(tiny_model, fixture_task("flickr30k", tmp_path), eval_config))
    assert list(paper) == [*RECALL_METRICS, "mean_recall"] and paper["mean_recall"]["is_main"]
    assert {m: paper[m]["value"] for m in RECALL_METRICS} == {m: rows[m]["value"] for m in RECALL_METRICS}
    assert paper["mean_recall"]["value"] == pytest.approx(np.mean([rows[m]["value"] for m in RECALL_METRICS]))


def test_interval_outcomes_and_compare(flickr1k, eval_config, tiny_model, tmp_path):
    from clip_bench.report.compare import compare

    rows = by_metric(zeroshot(tiny_model, flickr1k, eval_config))
    main_row = rows["mean_recall@1"]
    out = load_for_row(main_row, eval_config.output_dir)
    assert out.recompute() == main_row["value"] and out.cluster_sums()[0].shape == (50, 2)
    assert main_row["ci_method"] == "bootstrap-cluster-1000" and main_row["ci_low"] < main_row["value"]
    assert main_row["value"] < main_row["ci_high"]
    noisy = checkpoint_folder(tmp_path / "noisy", perturb=True) / "epoch_32.safetensors"
    zeroshot("tiny-clip-digits", flickr1k, eval_config, pretrained=str(noisy), device="cpu")
    c = compare("tiny-clip-digits:builtin", f"tiny-clip-digits:{noisy}", eval_config.output_dir)
    t = c.tasks[0]
    assert t.task == "datacomp_flickr1k" and t.metric == "mean_recall@1" and t.n == 149
    assert t.test == "paired cluster bootstrap (1000)" and t.ci_low <= t.diff <= t.ci_high
    # the report's retrieval table shows DataComp's summary beside the six recalls
    from clip_bench.report.retrieval import retrieval_table
    from clip_bench.results.rows import read_rows

    table = retrieval_table(read_rows(eval_config.output_dir))
    assert "mean" not in table and sorted(table["mean_R@1"]) == sorted([t.value_a, t.value_b])


def test_parquet_files_read_like_the_saved_folder(flickr1k, digit_set, eval_config):
    images, _, captions = digit_set
    task = get_task(flickr1k)
    saved = load_split(task, None, "test", eval_config.data_root)
    out = eval_config.data_root / "parquet" / FLICKR / "TEST" / "test" / "0000.parquet"  # the hub export's layout
    out.parent.mkdir(parents=True)
    hf_retrieval_dataset(images, captions).to_parquet(str(out), batch_size=16)
    parquet = load_split(task, None, "test", eval_config.data_root / "parquet")
    assert parquet.captions == saved.captions == captions
    for i in (0, 17, 49):
        np.testing.assert_array_equal(np.asarray(parquet.load_image(i)), np.asarray(saved.load_image(i)))


def test_download_writes_the_save_to_disk_layout(monkeypatch, digit_set, tmp_path):
    import datasets

    images, _, captions = digit_set
    calls = []

    def fake_load_dataset(path, split=None, revision=None, cache_dir=None, **kw):
        calls.append((path, split, revision))
        return hf_retrieval_dataset(images[:7], captions[:7])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = get_task(fixture_task("datacomp_mscoco5k", tmp_path))
    data = load_split(task, None, "test", tmp_path / "data", download=True)
    assert calls == [("nlphuji/mscoco_2014_5k_test_image_text_retrieval", "test", "refs/convert/parquet")]
    root = tmp_path / "data" / "mscoco_2014_5k_test_image_text_retrieval"
    assert (root / "test" / "state.json").is_file() and sorted(p.name for p in root.iterdir()) == ["test"]
    assert len(data) == 7 and data.captions == captions[:7]
    np.testing.assert_array_equal(np.asarray(data.load_image(3)), images[3])
    data = load_split(task, None, "test", tmp_path / "data", download=True)  # present: nothing fetched
    assert len(calls) == 1 and len(data) == 7


def test_loader_errors(digit_set, tmp_path, capsys):
    import datasets

    images, _, captions = digit_set
    task = get_task(fixture_task("datacomp_flickr1k", tmp_path))
    with pytest.raises(DataNotFoundError, match=r"no save_to_disk folder \(test/state.json\) and no parquet files"):
        load_split(task, None, "test", tmp_path / "data")
    split = tmp_path / "data" / FLICKR / "test"
    datasets.Dataset.from_dict({"image": [{"bytes": b"", "path": None}], "caption": ['["a digit", "a 7"]']},
                               features=datasets.Features({"image": datasets.Image(),
                                                           "caption": datasets.Value("string")})).save_to_disk(
        str(split))
    with pytest.raises(DataNotFoundError, match="row 0 of column 'caption' holds text, not a list of caption strings"):
        load_split(task, None, "test", tmp_path / "data")
    # the shipped task expects 1,000 images and 5,000 captions: a 50-image copy is an error, never a subset
    import shutil

    shutil.rmtree(split)
    hf_retrieval_dataset(images, captions).save_to_disk(str(split))
    capsys.readouterr()
    code = main(["zeroshot", "--model", "tiny-clip-digits", "--task", "datacomp_flickr1k", "--data-root",
                 str(tmp_path / "data"), "--no-cache", "--output-dir", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "has 50 samples but 1000 are expected" in err, err
    assert Path(split / "state.json").is_file()
