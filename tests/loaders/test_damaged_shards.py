"""WebDataset shards that would pair images with the wrong labels are errors naming the shard and key,
through the CLI: one line, exit status 2."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from cli_checks import one_line_error
from dataset_fixtures import _add, digits_rgb, encode, write_wds

DIGITS = [str(i) for i in range(10)]
TASK = """name: wds_strict
version: 1
prompts: mnist
metric: accuracy
splits: [test]
sources:
  wds: {loader: wds, path: wds_digits}
"""


@pytest.fixture
def setup(tmp_path):
    task = tmp_path / "wds_strict.yaml"
    task.write_text(TASK)
    images, labels = digits_rgb("test", 32)
    root = tmp_path / "data" / "wds_digits"
    argv = ["zeroshot", "--model", "tiny-clip-digits", "--task", str(task), "--data-root", str(tmp_path / "data"),
            "--no-cache", "--output-dir", str(tmp_path / "out"), "--workers", "0", "--quiet"]
    return root, images[:30], labels[:30], argv


def write_shard(path: Path, samples: list[tuple[str, int, object]]) -> None:
    """A tar shard of (key, label text, image) samples, written as given (repeats included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for key, label, image in samples:
            _add(tf, f"{key}.cls", str(label).encode())
            _add(tf, f"{key}.webp", encode(image, "webp"))


def test_repeated_key_within_a_shard(setup, capsys):
    root, images, labels, argv = setup
    write_wds(root, "test", images, labels, DIGITS)
    samples = [(f"s{i:07d}", int(labels[i]), images[i]) for i in range(30)]
    samples[20] = ("s0000003", int(labels[20]), images[20])  # key 3 again, with another image and label
    write_shard(root / "test" / "0.tar", samples)
    msg = one_line_error(argv, capsys)
    assert "sample key 's0000003' appears twice in shard 0.tar" in msg and str(root / "test" / "0.tar") in msg


def test_repeated_key_across_shards(setup, capsys):
    """Today: shard 1 repeats shard 0's keys, and the images are silently paired with other samples' labels."""
    root, images, labels, argv = setup
    write_wds(root, "test", images, labels, DIGITS, shard_size=15)
    write_shard(root / "test" / "1.tar", [(f"s{i - 15:07d}", int(labels[i]), images[i]) for i in range(15, 30)])
    msg = one_line_error(argv, capsys)
    assert "sample key 's0000000' appears in shard 0.tar and again in shard 1.tar" in msg, msg


@pytest.mark.parametrize("bad", [-1, 10, 99])
def test_label_out_of_range_names_shard_and_key(setup, capsys, bad):
    """Today a .cls of -1 wraps to the last class (or is scored as an extra class) with exit status 0."""
    root, images, labels, argv = setup
    labels = labels.copy()
    labels[7] = bad
    write_wds(root, "test", images, labels, DIGITS)
    msg = one_line_error(argv, capsys)
    assert f"sample 's0000007' in 0.tar has label {bad}, outside the source's 10 classes (0..9)" in msg, msg


@pytest.mark.parametrize("text", ["two", "", "-1", "1.5"])
def test_nshards_not_a_number_names_the_file(setup, capsys, text):
    root, images, labels, argv = setup
    write_wds(root, "test", images, labels, DIGITS)
    (root / "test" / "nshards.txt").write_text(text)
    msg = one_line_error(argv, capsys)
    assert f"{root / 'test' / 'nshards.txt'} should hold the number of shards (a positive integer)" in msg, msg


def truncate_before_member(shard: Path, member: str) -> None:
    """Cut a shard off just before `member`'s header: every member before it stays whole (a member boundary)."""
    with tarfile.open(shard) as tf:
        offset = tf.getmember(member).offset
    with open(shard, "r+b") as f:
        f.truncate(offset)


def test_shard_truncated_at_a_member_boundary_names_the_shard(setup, capsys):
    """Today the 10 whole samples left in shard 1 are read as a shorter split (n = 25 of 30), exit status 0."""
    root, images, labels, argv = setup
    write_wds(root, "test", images, labels, DIGITS, shard_size=15)
    truncate_before_member(root / "test" / "1.tar", "s0000025.cls")
    msg = one_line_error(argv, capsys)
    assert "shard 1.tar is not a readable tar file" in msg and "without the end-of-archive marker" in msg, msg
    assert str(root / "test" / "1.tar") in msg


@pytest.fixture
def retrieval(tmp_path):
    """The shipped flickr30k task (without its full-size counts) over a 40-image retrieval WebDataset."""
    from dataset_fixtures import fixture_task
    from retrieval_fixtures import digit_retrieval_set, write_retrieval_wds

    images, _, captions = digit_retrieval_set(per_class=4)
    root = tmp_path / "data" / "wds_flickr30k"
    write_retrieval_wds(root, "test", images, captions, shard_size=20)
    task = fixture_task("flickr30k", tmp_path)
    argv = ["zeroshot", "--model", "tiny-clip-digits", "--task", task, "--source", "wds", "--data-root",
            str(tmp_path / "data"), "--no-cache", "--output-dir", str(tmp_path / "out"), "--workers", "0", "--quiet"]
    return root, images, captions, argv


def write_retrieval_shard(path: Path, samples: list[tuple[str, list[str], object]]) -> None:
    """A retrieval tar shard of (key, captions, image) samples, written as given (repeats included)."""
    with tarfile.open(path, "w") as tf:
        for key, captions, image in samples:
            _add(tf, f"{key}.webp", encode(image, "webp"))
            _add(tf, f"{key}.txt", "\n".join(captions).encode("utf-8"))


def test_retrieval_repeated_key_within_a_shard(retrieval, capsys):
    """Today image 3 is scored against another sample's captions and one image is dropped (n = 39 of 40)."""
    root, images, captions, argv = retrieval
    samples = [(f"s{i:07d}", captions[i], images[i]) for i in range(20)]
    samples[12] = ("s0000003", captions[12], images[12])
    write_retrieval_shard(root / "test" / "0.tar", samples)
    msg = one_line_error(argv, capsys)
    assert "sample key 's0000003' appears twice in shard 0.tar" in msg and str(root / "test" / "0.tar") in msg, msg


def test_retrieval_repeated_key_across_shards(retrieval, capsys):
    root, images, captions, argv = retrieval
    write_retrieval_shard(root / "test" / "1.tar", [(f"s{i - 20:07d}", captions[i], images[i]) for i in range(20, 40)])
    msg = one_line_error(argv, capsys)
    assert "sample key 's0000000' appears in shard 0.tar and again in shard 1.tar" in msg, msg


def test_retrieval_shard_truncated_at_a_member_boundary_names_the_shard(retrieval, capsys):
    root, images, captions, argv = retrieval
    truncate_before_member(root / "test" / "1.tar", "s0000030.webp")
    msg = one_line_error(argv, capsys)
    assert "shard 1.tar is not a readable tar file" in msg and "without the end-of-archive marker" in msg, msg
