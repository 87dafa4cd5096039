"""The paper's Table 9 probe protocols, on fixtures in each dataset's real on-disk format: STL-10's 10
predefined folds, UCF101's 3 official splits, RESISC45's 3,150 training images, VOC2007's ignored
"difficult" images (devkit rule) in the mAP."""

from __future__ import annotations

import hashlib
import importlib

import numpy as np
import pytest
import yaml
from dataset_fixtures import digits_rgb, fixture_task, write_stl10_binary, write_ucf101_frames, write_voc

from clip_bench import zeroshot
from clip_bench.loaders.class_folders import per_class_split
from clip_bench.metrics.classification import map_11point, top1
from clip_bench.models.resolve import ModelHandle
from clip_bench.probe import LogisticRegressionProbe
from clip_bench.probe.protocol import ProbeConfig, run_linear_probe
from clip_bench.protocols.linprobe import linprobe
from clip_bench.protocols.runner import get_features
from clip_bench.results.rows import result_id
from clip_bench.tasks.catalog import get_task
from clip_bench.util.errors import ClipBenchError

FAST = ProbeConfig(steps_per_decade=2)  # a 25-point C grid: these tests are about which data each probe sees


def big(images: np.ndarray, factor: int = 3) -> np.ndarray:
    return images.repeat(factor, axis=1).repeat(factor, axis=2)


# --- STL-10: one probe per predefined training fold --------------------------------------------

@pytest.fixture
def stl10(eval_config, monkeypatch):
    from torchvision.datasets import STL10

    images, labels = digits_rgb("train", 32)
    test_images, test_labels = digits_rgb("test", 32)
    rng = np.random.default_rng(0)
    train_idx = np.concatenate([np.flatnonzero(labels == c)[:20] for c in range(10)])  # 200 images, 20 per class
    test_idx = np.concatenate([np.flatnonzero(test_labels == c)[:10] for c in range(10)])
    ty = labels[train_idx]
    folds = [np.sort(np.concatenate([rng.choice(np.flatnonzero(ty == c), 4, replace=False) for c in range(10)]))
             for _ in range(10)]  # like the real file: 10 folds, each a class-balanced subset of train
    md5 = write_stl10_binary(eval_config.data_root / "stl10", (big(images[train_idx]), ty),
                             (big(test_images[test_idx]), test_labels[test_idx]), folds)
    monkeypatch.setattr(STL10, "train_list", [[f, md5[f]] for f in ("train_X.bin", "train_y.bin", "unlabeled_X.bin")])
    monkeypatch.setattr(STL10, "test_list", [[f, md5[f]] for f in ("test_X.bin", "test_y.bin")])
    return folds, md5


@pytest.mark.slow
def test_stl10_probes_each_predefined_fold_and_reports_the_mean(tmp_path, eval_config, stl10):
    folds, _ = stl10
    task = fixture_task("stl10", tmp_path)
    rows = linprobe("tiny-clip-digits", task, eval_config, device="cpu", probe=FAST)
    per_fold, (mean,) = rows[:-1], rows[-1:]
    assert [r["extra"]["fold"] for r in per_fold] == list(range(10)) and not any(r["is_main"] for r in per_fold)
    assert all(r["extra"]["n_refit"] == 40 and r["n"] == 100 for r in per_fold)  # fold size, whole test split
    fold_file = eval_config.data_root / "stl10" / "stl10_binary" / "fold_indices.txt"
    assert {r["extra"]["folds_sha256"] for r in rows} == {hashlib.sha256(fold_file.read_bytes()).hexdigest()}
    values = [r["value"] for r in per_fold]
    assert mean["is_main"] and mean["extra"]["over"] == "folds" and "aggregate" not in mean["extra"]
    assert mean["value"] == pytest.approx(np.mean(values)) and mean["n"] == 100
    assert mean["extra"]["std"] == pytest.approx(np.std(values, ddof=1)) and mean["extra"]["n_runs"] == 10
    assert mean["extra"]["min"] == min(values) and mean["extra"]["max"] == max(values)
    assert np.mean(values) > 60  # ~80% at 4 shots a class; chance is 10%
    # each fold is its own measurement (identity, outcomes file); the mean row is the one a sweep looks for
    assert len({r["result_id"] for r in rows}) == 11 and len({r["outcomes"] for r in per_fold}) == 10
    assert mean["ci_method"].startswith("folds+") and mean["ci_low"] < mean["value"] < mean["ci_high"]
    from clip_bench.protocols.sweep import expected_main_row

    expected = expected_main_row(ModelHandle.of("tiny-clip-digits", device="cpu"), task, "linprobe", eval_config)
    # FAST's coarser grid is part of the rows' identity (probe_config); with the default config the ids agree
    assert mean["extra"]["probe_config"] == {"steps_per_decade": 2}
    default_mean = {**mean, "extra": {k: v for k, v in mean["extra"].items() if k != "probe_config"}}
    assert expected["result_id"] == result_id(default_mean) and expected["feature_kind"] == "pre-proj"

    # fold 3's row is exactly the paper's probe on the fold's 40 images
    handle = ModelHandle.of("tiny-clip-digits", device="cpu")
    train = get_features(handle, get_task(task), "train", eval_config, kind="pre-proj")
    test = get_features(handle, get_task(task), "test", eval_config, kind="pre-proj")
    f3 = folds[3]
    ref = run_linear_probe(train.features[f3], train.labels[f3], None, None, test.features, test.labels, top1,
                           config=FAST, n_classes=10)
    assert per_fold[3]["value"] == pytest.approx(ref["test_score"]) and per_fold[3]["extra"]["C"] == ref["C"]

    # with --limit the folds keep only their images inside the subset (positions in the limited features)
    limited = linprobe("tiny-clip-digits", task, eval_config, device="cpu", probe=FAST, limit=100, output_dir=None)
    from clip_bench.loaders.subset import subset_indices

    kept = subset_indices(200, 100, labels=np.asarray(train.labels))  # --limit's (stratified) rule
    assert [r["extra"]["n_refit"] for r in limited[:-1]] == [int(np.isin(kept, f).sum()) for f in folds]


def test_stl10_folds_need_a_source_with_the_fold_file(tmp_path, eval_config, stl10):
    task = fixture_task("stl10", tmp_path)
    with pytest.raises(ClipBenchError, match="source 'wds' has no predefined folds.*--source torchvision"):
        linprobe("tiny-clip-digits", task, eval_config, device="cpu", source="wds")
    fold_file = eval_config.data_root / "stl10" / "stl10_binary" / "fold_indices.txt"
    fold_file.write_text("\n".join(fold_file.read_text().splitlines()[:9]) + "\n")
    with pytest.raises(ClipBenchError, match="has 9 folds; the task expects 10"):
        linprobe("tiny-clip-digits", task, eval_config, device="cpu")
    fold_file.write_text("0 1 5000\n" * 10)
    with pytest.raises(ClipBenchError, match=r"line 1: indices must be distinct and in \[0, 200\)"):
        linprobe("tiny-clip-digits", task, eval_config, device="cpu")


# --- UCF101: the 3 official splits, averaged ---------------------------------------------------

UCF = ["ApplyEyeMakeup", "Hammering", "JumpRope", "YoYo"]  # four classes, shown as the digits 0-3


def test_ucf101_linear_probe_averages_the_three_official_splits(tmp_path, eval_config):
    images, labels = digits_rgb("test", 32)
    lists: dict[str, list] = {f"{kind}list0{s}": [] for s in (1, 2, 3) for kind in ("train", "test")}
    for c, folder in enumerate(UCF):
        examples = np.flatnonzero(labels == c)
        for g in range(1, 10):  # groups 1-3 are split 1's test, 4-6 split 2's, 7-9 split 3's
            clip = (f"{folder}/v_{folder}_g{g:02d}_c01", images[examples[g]].repeat(2, axis=0).repeat(2, axis=1))
            for s in (1, 2, 3):
                lists[f"{'test' if (g - 1) // 3 + 1 == s else 'train'}list0{s}"].append(clip)
    write_ucf101_frames(eval_config.data_root / "ucf101", lists)
    task = fixture_task("ucf101", tmp_path)
    rows = linprobe("tiny-clip-digits", task, eval_config, device="cpu", probe=FAST)
    runs, mean = rows[:-1], rows[-1]
    assert [(r["extra"]["run"], r["extra"]["train_split"], r["extra"]["test_split"]) for r in runs] == [
        ("split1", "train", "test"), ("split2", "train2", "test2"), ("split3", "train3", "test3")]
    assert all(r["n"] == 12 and r["extra"]["n_refit"] == 24 and not r["is_main"] for r in runs)
    assert mean["is_main"] and mean["extra"]["over"] == "splits" and mean["n"] == 36  # 3 disjoint test lists
    assert mean["value"] == pytest.approx(np.mean([r["value"] for r in runs]))
    zs = [r for r in zeroshot("tiny-clip-digits", task, eval_config, device="cpu") if r["is_main"]]
    assert zs[0]["n"] == 12 and zs[0]["split"] == "test"  # zero-shot stays on split 1


def test_ucf101_ships_all_three_official_split_lists():
    task = get_task("ucf101")
    src = task.source()
    assert [src.source_split(s) for s in task.splits] == [
        "trainlist01", "testlist01", "trainlist02", "testlist02", "trainlist03", "testlist03"]
    assert [src.expected[s] + src.expected[s.replace("train", "test")]
            for s in ("train", "train2", "train3")] == [13320] * 3


# --- RESISC45: 3,150 training images in all -----------------------------------------------------

def test_resisc45_probe_fits_on_3150_images_and_keeps_the_version1_test_images():
    task = get_task("resisc45")
    local = task.source("local")
    per_class = local.args["per_class"]
    assert per_class["train"] + per_class["val"] == 70 and local.expected["train"] + local.expected["val"] == 3150
    assert local.expected["test"] == 25200 and task.version == 2
    old = per_class_split(700, {"train": 70, "val": 70, "test": 560}, np.random.default_rng(0))
    new = per_class_split(700, per_class, np.random.default_rng(0))
    assert np.array_equal(old["test"], new["test"])  # zero-shot scores the same images as before
    assert set(new["train"]) | set(new["val"]) <= set(old["train"])
    assert "3,150" in task.description


# --- VOC2007: difficult-only images are ignored for their class --------------------------------

def test_map_ignores_entries_marked_minus_one():
    # class 0: a difficult-only image ranked first. Ignored -> AP 1; as a negative -> 0.5; as a positive -> 1
    # class 1: a difficult-only image ranked last. Ignored -> AP 1; as a positive (old reading of -1) -> 0.85
    scores = np.array([[0.9, 0.9], [0.5, 0.5], [0.1, 0.1], [0.05, 0.05]])
    targets = np.array([[-1, 1], [1, 0], [0, 0], [0, -1]], dtype=np.float32)
    assert map_11point(scores, targets) == pytest.approx(100.0)
    assert map_11point(scores, np.maximum(targets, 0)) == pytest.approx((50.0 + 100.0) / 2)
    only_ignored = np.array([[1, -1], [0, 0]], dtype=np.float32)  # a class with no positive is left out
    assert map_11point(np.array([[0.9, 0.1], [0.1, 0.9]]), only_ignored) == pytest.approx(100.0)


VOC = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
       "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def _voc_sets() -> dict[str, dict[str, list[tuple[str, int]]]]:
    """Every class positive and negative in each set; a third of the images hold a difficult-only class."""
    rng = np.random.default_rng(1)
    sets, n = {}, 0
    for name, size in (("train", 40), ("val", 20), ("test", 40)):
        images = {}
        for j in range(size):
            objects = [(VOC[j % 20], 0)]
            if j % 3 == 0:
                objects.append((VOC[int(rng.integers(20))], 1))
            images[f"{n:06d}"] = objects
            n += 1
        sets[name] = images
    return sets


def test_voc2007_zero_shot_and_probe_follow_the_devkit(tmp_path, eval_config):
    sets = _voc_sets()
    write_voc(eval_config.data_root / "voc2007", sets)
    task = fixture_task("voc2007", tmp_path)
    spec = get_task(task)
    test = get_features(ModelHandle.of("tiny-clip-digits", device="cpu"), spec, "test", eval_config, kind="embed")
    assert (test.labels == -1).sum() > 0
    row = next(r for r in zeroshot("tiny-clip-digits", task, eval_config, device="cpu") if r["is_main"])
    from clip_bench.protocols.zeroshot_head import build_classifier, zeroshot_logits

    logits = zeroshot_logits(test.features, build_classifier(ModelHandle.of("tiny-clip-digits", device="cpu"),
                                                             spec.prompt_set(), eval_config.cache_dir, quiet=True))
    assert row["value"] == pytest.approx(map_11point(logits, test.labels))
    assert row["value"] != pytest.approx(map_11point(logits, np.maximum(test.labels, 0)))  # ignoring matters here
    from clip_bench.results.outcomes import load_for_row

    stored = load_for_row(row, eval_config.output_dir)  # the row's evidence keeps the ignored entries
    assert ((stored.labels == -1).sum() == (test.labels == -1).sum()
            and stored.recompute() == pytest.approx(row["value"]))
    assert row["ci_method"].startswith("bootstrap") and row["ci_low"] < row["ci_high"]
    probe = linprobe("tiny-clip-digits", task, eval_config, device="cpu", probe=FAST)[0]
    assert probe["metric"] == "map_11point" and 0 < probe["value"] <= 100 and probe["extra"]["n_refit"] == 60


def test_voc2007_probe_chooses_C_on_the_devkit_metric(monkeypatch, tmp_path, eval_config):
    """The val split's difficult-only entries (-1) reach the C search (the metric skips them); linprobe
    used to map them to 0, so C was chosen on a metric that counted them as negatives."""
    linprobe_module = importlib.import_module("clip_bench.protocols.linprobe")

    calls = []

    def spy(*args, **kwargs):
        calls.append(np.asarray(args[3]).copy())  # val_y
        return run_linear_probe(*args, **kwargs)

    monkeypatch.setattr(linprobe_module, "run_linear_probe", spy)
    write_voc(eval_config.data_root / "voc2007", _voc_sets())
    linprobe("tiny-clip-digits", fixture_task("voc2007", tmp_path), eval_config, device="cpu", probe=FAST)
    assert calls and (calls[0] == -1).sum() > 0


def test_task_descriptions_state_the_protocol_choices():
    for name, phrase in (("stl10", "10 predefined training folds"), ("ucf101", "mean over the 3 splits"),
                         ("resisc45", "3,150 in all"), ("voc2007", "neither positive nor negative")):
        assert phrase in " ".join(get_task(name).description.split()), name
    raw = yaml.safe_load(open(get_task("stl10").file))
    assert raw["probe"]["folds"]["files"] == {"torchvision": "stl10_binary/fold_indices.txt"}


def test_clip_bench_tasks_name_shows_the_description(capsys):
    from clip_bench.cli.app import main

    assert main(["tasks", "stl10", "ucf101"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "stl10: STL-10" in out and "10 predefined training folds" in out and "mean over the 3 splits" in out


def test_every_task_has_a_valid_probe_plan_and_bad_plans_are_one_line_errors(tmp_path):
    from clip_bench.tasks.catalog import list_tasks
    from clip_bench.tasks.probe_plan import probe_plan

    for name in list_tasks():
        task = get_task(name)
        if task.train_split is not None or "probe" in task.extra:
            assert probe_plan(task).runs, name
    raw = yaml.safe_load(open(get_task("ucf101").file))
    raw["probe"] = {"runs": [{"name": "a", "train": "train", "tset": "test"}]}
    bad = tmp_path / "ucf_bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ClipBenchError, match="probe run 0 has unknown key 'tset'"):
        probe_plan(get_task(str(bad)))


def test_validation_metric_skips_ignored_multilabel_targets_and_the_fit_never_sees_them():
    """VOC's difficult-only entries (-1) must count neither as positive nor as negative in the mAP that
    chooses C, as in the test mAP. linprobe mapped them to 0 (negatives) before the C search; the fit
    itself trains with them as negatives."""
    from clip_bench.probe import ProbeConfig, run_linear_probe

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    Y = (X[:, :3] + 0.5 * rng.normal(size=(300, 3)) > 0).astype(np.int64)
    Y[rng.random(Y.shape) < 0.1] = -1  # ignored entries everywhere
    seen = []

    def metric(scores, targets):
        seen.append(np.asarray(targets).copy())
        return map_11point(scores, targets)

    res = run_linear_probe(X[:150], Y[:150], X[150:220], Y[150:220], X[220:], Y[220:], metric,
                           config=ProbeConfig(n_threads=1), multilabel=True)
    val_calls = [t for t in seen if t.shape[0] == 70]
    assert val_calls and all((t == -1).sum() == (Y[150:220] == -1).sum() for t in val_calls)
    assert res["n_refit"] == 220 and np.isfinite(res["val_log_loss"])
    with pytest.raises(ClipBenchError, match="must be 0 or 1"):
        LogisticRegressionProbe(multilabel=True).fit(X[:150], Y[:150])
