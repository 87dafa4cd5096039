"""WinoGAViL (kind ``winogavil``) end to end with the tiny CLIP on a digit fixture in the dataset's save_to_disk
layout: scores against a brute-force computation, intervals, compare, caches, --limit, download and loader errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import fixture_task
from model_fixtures import checkpoint_folder
from winogavil_fixtures import digit_instances, winogavil_dataset, write_winogavil

from clip_bench import zeroshot
from clip_bench.cache.text import TextEmbeddingCache
from clip_bench.cli.app import main
from clip_bench.loaders import load_split
from clip_bench.models.resolve import ModelHandle
from clip_bench.models.text_encoder import encode_prompts
from clip_bench.protocols.runner import get_features
from clip_bench.protocols.sweep import ModelEntry, is_done, plan
from clip_bench.protocols.winogavil import cue_prompt
from clip_bench.results.outcomes import load_for_row
from clip_bench.tasks.catalog import get_task
from clip_bench.tasks.spec import task_kind
from clip_bench.util.errors import ClipBenchError, DataNotFoundError


@pytest.fixture(scope="module")
def digit_set():
    return digit_instances(per_size=5)  # 20 instances: 5 each with 5, 6, 10 and 12 candidates


@pytest.fixture
def wino(tmp_path, eval_config, digit_set):
    """The shipped datacomp_winogavil task (minus its full-size count) with the fixture at its data path."""
    instances, images = digit_set
    write_winogavil(eval_config.data_root / "winogavil" / "test", instances, images)
    return fixture_task("datacomp_winogavil", tmp_path)


def by_metric(rows):
    return {r["metric"]: r for r in rows}


def brute_force(instances, cell_features, cue_features):
    """Per instance, by hand: the top-|true| candidates by cosine similarity (equal scores: the later candidate
    first), and the Jaccard index of the picked and the true sets of candidate names."""
    out = []
    for inst, feats, cue in zip(instances, cell_features, cue_features):
        feats = feats.astype(np.float64) / np.linalg.norm(feats.astype(np.float64), axis=1, keepdims=True)
        sims = feats @ cue.astype(np.float64)
        names = inst["candidates"]
        true = {n for n in names if n in set(inst["associations"])}
        order = sorted(range(len(names)), key=lambda j: (sims[j], j), reverse=True)
        picked = {names[j] for j in order[:len(true)]}
        out.append(len(picked & true) / len(picked | true))
    return np.asarray(out)


def chance(instances):
    """The expected Jaccard of a random pick of |true| of the candidates (hypergeometric), per instance."""
    from scipy.stats import hypergeom

    out = []
    for inst in instances:
        n_all, n_true = len(inst["candidates"]), len(set(inst["candidates"]) & set(inst["associations"]))
        m = np.arange(n_true + 1)
        out.append(float(np.sum(hypergeom(n_all, n_true, n_true).pmf(m) * m / (2 * n_true - m))))
    return np.asarray(out)


def test_cue_prompt_is_datacomps_a_or_an():
    assert cue_prompt("7") == "A 7"
    assert cue_prompt("seven") == "A seven"
    assert cue_prompt("Eight") == "An eight"  # lower-cased first, then the vowel rule
    assert cue_prompt("UFO") == "An ufo"
    assert cue_prompt("Werewolf") == "A werewolf"
    assert cue_prompt("hour") == "A hour"  # letters, not sounds
    with pytest.raises(ClipBenchError, match="empty"):
        cue_prompt("")


def test_shipped_task():
    task = get_task("datacomp_winogavil")
    assert task_kind(task) == "winogavil" and task.metric == "jaccard_10_12"
    source = task.source()
    assert source.loader == "hf_winogavil" and source.expected == {"test": 3563}
    assert source.args == {"repo": "nlphuji/winogavil", "revision": "refs/convert/parquet"}


def test_jaccard_rows_equal_a_brute_force_computation(wino, digit_set, eval_config, tiny_model):
    instances, _ = digit_set
    rows = by_metric(zeroshot(tiny_model, wino, eval_config))
    assert list(rows) == ["jaccard_10_12", "jaccard_5_6", "jaccard_all"]
    assert [m for m, r in rows.items() if r["is_main"]] == ["jaccard_10_12"]
    main_row = rows["jaccard_10_12"]
    assert main_row["protocol"] == "winogavil" and main_row["source"] == "hf" and main_row["task_version"] == 1
    assert main_row["extra"]["n_instances"] == 20 and main_row["extra"]["n_images"] == 165
    assert (main_row["n"], rows["jaccard_5_6"]["n"], rows["jaccard_all"]["n"]) == (10, 10, 20)
    # the candidate images' features as cached, and the prompts encoded directly (no text cache)
    feats = get_features(ModelHandle.of(tiny_model), get_task(wino), "test", eval_config)
    assert np.array_equal(feats.labels, np.arange(165))
    starts = np.cumsum([0] + [len(x["candidates"]) for x in instances])
    cells = [np.asarray(feats.features[a:b]) for a, b in zip(starts[:-1], starts[1:])]
    cues = encode_prompts(tiny_model, [cue_prompt(x["cue"]) for x in instances])
    ref = brute_force(instances, cells, cues)
    n_cand = np.asarray([len(x["candidates"]) for x in instances])
    assert main_row["value"] == pytest.approx(100 * ref[n_cand >= 10].mean(), abs=1e-9)
    assert rows["jaccard_5_6"]["value"] == pytest.approx(100 * ref[n_cand <= 6].mean(), abs=1e-9)
    assert rows["jaccard_all"]["value"] == pytest.approx(100 * ref.mean(), abs=1e-9)
    # scikit-learn's jaccard_score (DataComp's) on the same picks agrees with the sets
    from sklearn.metrics import jaccard_score

    out = load_for_row(rows["jaccard_all"], eval_config.output_dir)
    for i, (inst, cell, cue) in enumerate(zip(instances, cells, cues)):
        y_true = np.isin(inst["candidates"], inst["associations"])
        sims = (cell / np.linalg.norm(cell, axis=1, keepdims=True)) @ cue
        y_pred = np.isin(np.arange(len(sims)), np.argsort(sims, kind="stable")[-int(y_true.sum()):])
        assert out.scores[i] == pytest.approx(jaccard_score(y_true, y_pred), abs=1e-12) == pytest.approx(ref[i])
    # the tiny CLIP reads digits: well above a random pick (the digit's word is a cue it knows less well)
    assert main_row["value"] > 2 * 100 * chance(instances)[n_cand >= 10].mean()
    assert rows["jaccard_all"]["value"] > 2 * 100 * chance(instances).mean()
    # the prompts went through the text cache, DataComp's "A <cue>" / "An <cue>"
    cached = TextEmbeddingCache(eval_config.cache_dir, tiny_model.fingerprint, tiny_model.tokenizer_id)._load()
    assert instances[2]["cue"] == "Eight" and "An eight" in cached
    assert {cue_prompt(x["cue"]) for x in instances} <= set(cached)


def test_intervals_outcomes_and_second_run_from_the_caches(wino, eval_config, tiny_model):
    first = by_metric(zeroshot(tiny_model, wino, eval_config))
    for m, row in first.items():
        out = load_for_row(row, eval_config.output_dir)
        assert out.n == row["n"] and out.recompute() == pytest.approx(row["value"], abs=1e-9)
        assert row["ci_method"] == "bootstrap-1000" and row["ci_low"] < row["value"] < row["ci_high"], m
        # the interval is a bootstrap over instances: close to resampling the instances by hand
        rng = np.random.default_rng(1)
        by_hand = [100 * out.scores[rng.integers(0, out.n, out.n)].mean() for _ in range(4000)]
        lo, hi = np.percentile(by_hand, [2.5, 97.5])
        assert abs(row["ci_low"] - lo) < 4 and abs(row["ci_high"] - hi) < 4, (m, row["ci_low"], row["ci_high"], lo, hi)
    handle = ModelHandle.of("tiny-clip-digits", device="cpu")
    again = by_metric(zeroshot(handle, wino, eval_config))
    assert not handle.is_loaded  # images from the feature cache, prompts from the text cache
    assert {m: (r["value"], r["result_id"]) for m, r in again.items()} == {
        m: (r["value"], r["result_id"]) for m, r in first.items()}


def test_limit_draws_whole_instances(wino, eval_config, tiny_model):
    rows = by_metric(zeroshot(tiny_model, wino, eval_config, limit=8))
    main_row = rows["jaccard_10_12"]
    assert main_row["extra"]["limit"] == 8 and main_row["extra"]["n_instances"] == 8 and not main_row["standard"]
    assert (main_row["n"], rows["jaccard_5_6"]["n"]) == (4, 4)  # stratified by candidate count: 2 of each size
    assert main_row["extra"]["n_images"] == 2 * (5 + 6 + 10 + 12)
    with pytest.raises(ClipBenchError, match="none of the 1 scored instances is in the group of its main metric"):
        zeroshot(tiny_model, wino, eval_config, limit=1)


def test_compare_pairs_instances_and_rebuilds_missing_outcomes(wino, eval_config, tiny_model, tmp_path, monkeypatch):
    import yaml

    import clip_bench.models.resolve as models
    from clip_bench.report.compare import compare, compare_outcomes

    folder = tmp_path / "mytasks"  # a task found by its name, as a rebuild from the caches looks it up
    folder.mkdir()
    raw = yaml.safe_load(Path(wino).read_text(encoding="utf-8"))
    (folder / "digit_winogavil.yaml").write_text(yaml.safe_dump({**raw, "name": "digit_winogavil"}, sort_keys=False))
    monkeypatch.setenv("CLIP_BENCH_TASKS", str(folder))
    wino = "digit_winogavil"
    base = by_metric(zeroshot(tiny_model, wino, eval_config))
    noisy = checkpoint_folder(tmp_path / "noisy", perturb=True) / "epoch_32.safetensors"
    other = by_metric(zeroshot("tiny-clip-digits", wino, eval_config, pretrained=str(noisy), device="cpu"))
    c = compare("tiny-clip-digits:builtin", f"tiny-clip-digits:{noisy}", eval_config.output_dir)
    t = c.tasks[0]
    assert [x.task for x in c.tasks] == ["digit_winogavil"] and t.metric == "jaccard_10_12" and t.n == 10
    assert t.test == "paired bootstrap (1000)" and t.ci_low <= t.diff <= t.ci_high
    assert t.diff == pytest.approx(base["jaccard_10_12"]["value"] - other["jaccard_10_12"]["value"])
    oa = load_for_row(base["jaccard_all"], eval_config.output_dir)
    assert compare_outcomes(oa, oa)[4] == 1.0  # identical outcomes are never significant
    # a --limit run is other instances: refused
    limited = replace(eval_config, output_dir=tmp_path / "limited")
    zeroshot(tiny_model, wino, limited)
    zeroshot("tiny-clip-digits", wino, limited, pretrained=str(noisy), device="cpu", limit=8)
    with pytest.raises(ClipBenchError, match=r"not evaluated on the same test samples \(--limit None vs 8, 10 vs 4"):
        compare("tiny-clip-digits:builtin", f"tiny-clip-digits:{noisy}", limited.output_dir, tasks=["digit_winogavil"])
    # outcomes deleted: rebuilt from the feature and text caches, without the model
    (eval_config.output_dir / base["jaccard_10_12"]["outcomes"]).unlink()
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("backfill loaded the model"))
    from clip_bench.protocols.replay import backfill

    out = backfill(base["jaccard_10_12"], tmp_path / "rebuilt", eval_config.cache_dir, eval_config.data_root)
    assert out.recompute() == pytest.approx(base["jaccard_10_12"]["value"], abs=1e-9) and out.n == 10
    with pytest.raises(ClipBenchError, match="not in the cache"):
        backfill(base["jaccard_10_12"], tmp_path / "rebuilt2", tmp_path / "empty-cache", eval_config.data_root)


def test_sweep_runs_only_the_zeroshot_job_and_knows_it_is_done(wino, eval_config, tiny_model):
    jobs = plan([ModelEntry("tiny-clip-digits")], [wino, "digits"], ["zeroshot", "linprobe"])
    assert [(j.task, j.protocol) for j in jobs] == [(wino, "zeroshot"), ("digits", "zeroshot"),
                                                     ("digits", "linprobe")]
    rows = zeroshot(tiny_model, wino, eval_config)
    finished = {r["result_id"]: True for r in rows if r["is_main"]}
    assert is_done(jobs[0], finished, eval_config, ModelHandle.of(tiny_model))


def test_cli_json_rows(wino, eval_config, capsys):
    code = main(["zeroshot", "--model", "tiny-clip-digits", "--task", wino, "--data-root", str(eval_config.data_root),
                 "--cache-dir", str(eval_config.cache_dir), "--output-dir", str(eval_config.output_dir),
                 "--workers", "0", "--device", "cpu", "--format", "json", "--quiet"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["metric"] for r in rows] == ["jaccard_10_12", "jaccard_5_6", "jaccard_all"]


def test_download_writes_the_save_to_disk_layout(monkeypatch, digit_set, tmp_path):
    import datasets

    instances, images = digit_set
    calls = []

    def fake_load_dataset(path, split=None, revision=None, cache_dir=None, **kw):
        calls.append((path, split, revision))
        assert Path(cache_dir).parent.parent == tmp_path / "data" / "winogavil"  # a temporary folder, removed
        return winogavil_dataset(instances[:6], images)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = get_task(fixture_task("datacomp_winogavil", tmp_path))
    data = load_split(task, None, "test", tmp_path / "data", download=True)
    assert calls == [("nlphuji/winogavil", "test", "refs/convert/parquet")]
    assert (tmp_path / "data" / "winogavil" / "test" / "state.json").is_file()
    assert sorted(p.name for p in (tmp_path / "data" / "winogavil").iterdir()) == ["test"]
    assert data.expected_count == 6 and len(data) == sum(len(x["candidates"]) for x in instances[:6])
    k = len(instances[0]["candidates"]) + 2  # instance 1's third candidate
    np.testing.assert_array_equal(np.asarray(data.load_image(k)), images[instances[1]["images"][2]])
    assert data.describe(k).endswith(f"[1] candidate 2 ({instances[1]['candidates'][2]!r})")

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'nlphuji/winogavil' on the Hub (ConnectError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataNotFoundError, match=r"downloading nlphuji/winogavil \(test\) from the Hugging Face hub "
                                                r"failed: ConnectionError: Couldn't reach") as err:
        load_split(task, None, "test", tmp_path / "other", download=True)
    assert "accept its terms" in str(err.value)  # the manual way, from the task file


def _broken(instances, pixels, change):
    """The fixture with fields of instance 1 replaced."""
    rows = [dict(x) for x in instances]
    rows[1].update(change)
    return winogavil_dataset(rows, pixels)


@pytest.mark.parametrize("change, message", [
    ({"associations": ["not_a_candidate"]}, "instance 1 of WinoGAViL .* has no association among its candidates"),
    ({"cue": "  "}, "instance 1 of WinoGAViL .* has no cue"),
    ({"candidates": []}, "has no list of candidate names"),
], ids=["no-true-candidate", "blank-cue", "no-candidates"])
def test_damaged_instances_are_one_clear_error(digit_set, tmp_path, change, message):
    instances, images = digit_set
    if change.get("candidates") == []:
        change = {**change, "images": []}
    _broken(instances[:3], images, change).save_to_disk(str(tmp_path / "data" / "winogavil" / "test"))
    with pytest.raises(DataNotFoundError, match=message):
        load_split(get_task(fixture_task("datacomp_winogavil", tmp_path)), None, "test", tmp_path / "data")


def test_loader_layout_errors(digit_set, tmp_path, capsys):
    instances, images = digit_set
    task = get_task(fixture_task("datacomp_winogavil", tmp_path))
    with pytest.raises(DataNotFoundError, match=r"no save_to_disk folder \(test/state.json\)"):
        load_split(task, None, "test", tmp_path / "data")
    split = tmp_path / "data" / "winogavil" / "test"
    rows = [dict(x) for x in instances[:3]]
    rows[2]["images"] = rows[2]["images"][:-1]  # one image fewer than names
    winogavil_dataset(rows, images).save_to_disk(str(split))
    n = len(rows[2]["candidates"])
    with pytest.raises(DataNotFoundError, match=f"instance 2 .* has {n - 1} candidate images but {n} candidate names"):
        load_split(task, None, "test", tmp_path / "data")
    import shutil

    shutil.rmtree(split)
    winogavil_dataset(instances[:3], images).remove_columns(["cue"]).save_to_disk(str(split))
    with pytest.raises(DataNotFoundError, match="the dataset has no column 'cue'"):
        load_split(task, None, "test", tmp_path / "data")
    # the shipped task expects WinoGAViL's 3,563 instances: a 3-instance copy is an error, never a subset
    shutil.rmtree(split)
    winogavil_dataset(instances[:3], images).save_to_disk(str(split))
    capsys.readouterr()
    code = main(["zeroshot", "--model", "tiny-clip-digits", "--task", "datacomp_winogavil", "--data-root",
                 str(tmp_path / "data"), "--no-cache", "--output-dir", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "has 3 samples but 3563 are expected" in err, err


def test_kind_and_metric_must_fit(tmp_path):
    raw = Path(get_task("datacomp_winogavil").file).read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(raw.replace("metric: jaccard_10_12", "metric: accuracy"))
    with pytest.raises(ClipBenchError, match="does not fit kind 'winogavil'.*one of jaccard_10_12"):
        get_task(str(bad))
    bad.write_text(raw.replace("kind: winogavil", "kind: classification"))
    with pytest.raises(ClipBenchError, match=r"metric 'jaccard_10_12' \(a winogavil metric\) does not fit kind"):
        get_task(str(bad))


def test_images_stored_as_paths_are_read_and_fingerprinted(digit_set, tmp_path):
    """Image cells that name files and hold no bytes (``save_to_disk`` of older ``datasets`` versions; today's
    embeds the files): the files are read, count in the data, and a missing one is an error."""
    import pyarrow as pa
    from PIL import Image

    instances, images = digit_set
    folder = tmp_path / "pngs"
    folder.mkdir()
    split = tmp_path / "data" / "winogavil" / "test"
    winogavil_dataset(instances[:2], images).save_to_disk(str(split))
    cells = []
    for x in instances[:2]:
        for j in x["images"]:
            Image.fromarray(images[j]).save(folder / f"{j}.png")
        cells.append([{"bytes": None, "path": str(folder / f"{j}.png")} for j in x["images"]])
    arrow = next(split.glob("data-*.arrow"))  # the same table, its image cells rewritten as paths
    table = pa.ipc.open_stream(arrow.read_bytes()).read_all()
    at = table.schema.get_field_index("candidate_images")
    table = table.set_column(at, table.schema.field(at), pa.array(cells, type=table.schema.field(at).type))
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    task = get_task(fixture_task("datacomp_winogavil", tmp_path))
    data = load_split(task, None, "test", tmp_path / "data")
    k = len(instances[0]["candidates"]) + 1
    np.testing.assert_array_equal(np.asarray(data.load_image(k)), images[instances[1]["images"][1]])
    named = {str(folder / f"{j}.png") for x in instances[:2] for j in x["images"]}
    assert named <= {str(f) for f in data.data_files()}
    (folder / f"{instances[1]['images'][0]}.png").unlink()
    with pytest.raises(DataNotFoundError, match=f"1 of the {len(named)} images that the image cells name by path"):
        load_split(task, None, "test", tmp_path / "data")


def test_skip_bad_images_counts_every_instance_left_out(digit_set, eval_config, tmp_path, tiny_model):
    """--skip-bad-images: an instance none of whose images can be read is left out and counted like one that lost
    a single image (it was drawn: it is not a --limit instance)."""
    import datasets
    import pyarrow as pa

    from clip_bench.config import ExtractConfig

    instances, images = digit_set
    table = winogavil_dataset(instances[:6], images).data.table
    at = table.schema.get_field_index("candidate_images")
    cells = table.column(at).to_pylist()
    cells[0] = [{"bytes": b"not an image", "path": None} for _ in cells[0]]  # every image of instance 0
    cells[1][0] = {"bytes": b"not an image", "path": None}  # one image of instance 1
    table = table.set_column(at, table.schema.field(at), pa.array(cells, type=table.schema.field(at).type))
    datasets.Dataset(table).save_to_disk(str(eval_config.data_root / "winogavil" / "test"))
    task = fixture_task("datacomp_winogavil", tmp_path)
    cfg = replace(eval_config, extract=ExtractConfig(batch_size=128, workers=0, quiet=True, skip_bad_images=True))
    row = by_metric(zeroshot(tiny_model, task, cfg))["jaccard_all"]
    lost = len(instances[0]["candidates"]) + 1
    assert row["extra"]["skipped_images"] == lost and not row["standard"]
    assert row["extra"]["skipped_instances"] == 2 and row["extra"]["n_instances"] == row["n"] == 4
