"""Video tasks: real video files (written with PyAV) and frame folders, scored on their middle frame."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from dataset_fixtures import digits_rgb, fixture_task, write_json, write_video
from PIL import Image

from clip_bench import zeroshot
from clip_bench.loaders import load_split
from clip_bench.loaders.video import middle_frame
from clip_bench.tasks.catalog import get_task
from clip_bench.tasks.prompts import load_classnames
from clip_bench.util.errors import DataNotFoundError

needs_av = pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="writing video files needs PyAV")

CLIPS_PER_DIGIT = 4
TEMPLATE = ['a photo of the number: "{}".']

DIGIT_VIDEO_TASK = """name: digit_videos
version: 1
prompts: mnist
metric: accuracy
splits: [test]
sources:
  videos:
    loader: video
    path: digit_videos
  frames:
    loader: video
    path: digit_frames
"""


def big(image: np.ndarray) -> np.ndarray:
    """32x32 -> 64x64 (nearest): video codecs want even sides and blur small frames less."""
    return image.repeat(2, axis=0).repeat(2, axis=1)


@pytest.fixture(scope="module")
def clips():
    """CLIPS_PER_DIGIT clips per digit: 5 frames each, the middle one the clip's digit, the others not."""
    images, labels = digits_rgb("test", 32)
    rng = np.random.default_rng(0)
    out = []
    for d in range(10):
        for k in range(CLIPS_PER_DIGIT):
            others = rng.choice(np.flatnonzero(labels != d), 4, replace=False)
            frames = [big(images[i]) for i in others]
            frames.insert(2, big(images[np.flatnonzero(labels == d)[k]]))
            out.append((d, frames))
    return out


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "digit_videos.yaml"
    path.write_text(DIGIT_VIDEO_TASK)
    return str(path)


def main_row(rows):
    return next(r for r in rows if r["is_main"] and not r.get("subset"))


@needs_av
def test_middle_frame_of_a_video_file(tmp_path, clips):
    _, frames = clips[0]
    for name in ("clip.mp4", "clip.avi"):
        got = np.asarray(middle_frame(write_video(tmp_path / name, frames)), dtype=np.float32)
        errors = [np.abs(got - f).mean() for f in frames]
        assert int(np.argmin(errors)) == 2 and errors[2] < 8  # lossy codecs: close, not exact


def test_middle_frame_of_a_frame_folder(tmp_path):
    folder = tmp_path / "clip_frames"
    folder.mkdir()
    for i in range(11):  # frame1..frame11: natural order puts frame6 in the middle, not frame3
        Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(folder / f"frame{i + 1}.jpg", quality=100)
    assert abs(np.asarray(middle_frame(folder)).mean() - 5 * 20) < 2


@needs_av
def test_digit_videos_known_accuracy(tmp_path, clips, task_file, eval_config, tiny_model):
    root = eval_config.data_root / "digit_videos" / "test"
    for n, (d, frames) in enumerate(clips):
        write_video(root / str(d) / f"clip{n:03d}.{'avi' if n % 2 else 'mp4'}", frames)
    data = load_split(get_task(task_file), "videos", "test", eval_config.data_root)
    assert len(data) == 10 * CLIPS_PER_DIGIT
    np.testing.assert_array_equal(data.targets, np.repeat(np.arange(10), CLIPS_PER_DIGIT))
    row = main_row(zeroshot(tiny_model, task_file, eval_config, source="videos"))
    assert row["n"] == 40 and row["value"] > 75.0  # scoring any other frame would be wrong


def test_digit_frame_folders_known_accuracy(tmp_path, clips, task_file, eval_config, tiny_model):
    root = eval_config.data_root / "digit_frames" / "test"
    for n, (d, frames) in enumerate(clips):
        clip = root / str(d) / f"clip{n:03d}"
        clip.mkdir(parents=True)
        for i, f in enumerate(frames):
            Image.fromarray(f).save(clip / f"{i:05d}.jpg", quality=95)
    row = main_row(zeroshot(tiny_model, task_file, eval_config, source="frames"))
    assert row["n"] == 40 and row["value"] > 75.0


# --- UCF101: split lists, CamelCase folders matched to the prompts' class names ----------------

UCF_CLASSES = ["ApplyEyeMakeup", "HandstandPushups", "Hammering", "HammerThrow", "JumpRope", "JumpingJack", "YoYo"]


def ucf_file(folder: str, g: int, c: int) -> str:
    stem = "HandStandPushups" if folder == "HandstandPushups" else folder  # the real dataset's quirk
    return f"{folder}/v_{stem}_g{g:02d}_c{c:02d}.avi"


@needs_av
def test_ucf101_split1_labels_follow_the_prompts(tmp_path, clips, eval_config, tiny_model):
    root = eval_config.data_root / "ucf101"
    frames = clips[0][1]
    train, test = [], []
    for k, folder in enumerate(UCF_CLASSES):
        train.append(f"{ucf_file(folder, 8, 1)} {k + 1}")
        test.append(ucf_file(folder, 1, 1))
        for rel in (ucf_file(folder, 8, 1), ucf_file(folder, 1, 1)):
            write_video(root / "UCF-101" / rel, frames)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (lists / "testlist01.txt").write_text("\n".join(test) + "\n")

    names = list(load_classnames("ucf101"))
    expected = [names.index(n) for n in ("Apply Eye Makeup", "Hand Stand Pushups", "Hammering", "Hammer Throw",
                                         "Jump Rope", "Jumping Jack", "Yo Yo")]
    assert expected[2:4] == [35, 34]  # the prompts list HammerThrow before Hammering: order comes from names
    task = fixture_task("ucf101", tmp_path)
    for split in ("train", "test"):
        data = load_split(get_task(task), None, split, eval_config.data_root)
        np.testing.assert_array_equal(data.targets, expected)
    rows = zeroshot(tiny_model, task, eval_config)
    row = main_row(rows)
    assert row["task"] == "ucf101" and row["n"] == 7 and 0.0 <= row["value"] <= 100.0

    (root / "UCF-101" / ucf_file("YoYo", 1, 1)).unlink()
    with pytest.raises(DataNotFoundError, match="1 listed clips are absent"):
        load_split(get_task(task), None, "test", eval_config.data_root)


# --- Kinetics-700: val as test, label folders, mean(top-1, top-5) -------------------------------

@needs_av
def test_kinetics700_val_tree_and_metric(tmp_path, clips, eval_config, tiny_model):
    names = list(load_classnames("kinetics700"))
    val = eval_config.data_root / "kinetics700" / "val"
    for name in names:
        (val / name).mkdir(parents=True)
    positions = [0, 70, 140, 210, 280, 350, 420, 490, 560, 699]  # digit d's clips go to class positions[d]
    for n, (d, frames) in enumerate(clips):
        write_video(val / names[positions[d]] / f"yt{n:04d}_000010_000020.mp4", frames)
    data = load_split(get_task("kinetics700"), None, "test", eval_config.data_root)
    assert len(data) == 40 and sorted(set(data.targets.tolist())) == positions

    digit_names = list(names)
    for d, p in enumerate(positions):
        digit_names[p] = str(d)
    rows = zeroshot(
        tiny_model, "kinetics700", eval_config,
        classnames=write_json(tmp_path / "names.json", digit_names),
        templates=write_json(tmp_path / "templates.json", TEMPLATE),
    )
    by_metric = {r["metric"]: r for r in rows if not r.get("subset")}
    main = main_row(rows)
    assert main["metric"] == "mean_top1_top5" and main["n"] == 40
    assert main["value"] == pytest.approx((by_metric["top1"]["value"] + by_metric["top5"]["value"]) / 2)
    assert by_metric["top1"]["value"] > 75.0 and by_metric["top5"]["value"] >= by_metric["top1"]["value"]

    (val / names[5]).rmdir()
    with pytest.raises(DataNotFoundError, match="1 of 700 class folders are missing"):
        load_split(get_task("kinetics700"), None, "test", eval_config.data_root)


def test_video_loader_needs_a_clip_list_or_tree(eval_config):
    with pytest.raises(DataNotFoundError, match="no clip list for split 'testlist01'.*UCF CRCV"):
        load_split(get_task("ucf101"), None, "test", eval_config.data_root)
