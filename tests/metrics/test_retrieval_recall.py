"""Recall@k of the retrieval protocol against an independent brute-force reference, exact ties, and bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from clip_bench.metrics.retrieval import RetrievalRanks, flatten_captions, parse_metric, retrieval_ranks
from clip_bench.protocols.retrieval import apply_template
from clip_bench.util.errors import ClipBenchError


def features_for(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image and caption features whose products are exactly `scores` (one-hot images, captions = score columns)."""
    return np.eye(scores.shape[0], dtype=np.float32), np.ascontiguousarray(scores.T, dtype=np.float32)


def brute_force_hits(scores: np.ndarray, text_image: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query hit at k by sorting every query's candidates with key (-score, index): the documented tie rule."""
    n_img, n_txt = scores.shape
    i2t = []
    for i in range(n_img):
        top = sorted(range(n_txt), key=lambda j: (-scores[i, j], j))[:k]
        i2t.append(any(text_image[j] == i for j in top))
    t2i = []
    for t in range(n_txt):
        top = sorted(range(n_img), key=lambda j: (-scores[j, t], j))[:k]
        t2i.append(text_image[t] in top)
    return np.array(i2t), np.array(t2i)


def random_set(seed: int, n_img: int = 23, levels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random scores; 1-4 captions per image in shuffled order; `levels` quantises the scores (many exact ties)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 5, size=n_img)
    text_image = rng.permutation(np.repeat(np.arange(n_img), counts))
    scores = rng.standard_normal((n_img, len(text_image))).astype(np.float32)
    if levels:
        scores = np.round(scores * levels / 3) / levels
    return scores.astype(np.float32), text_image


@pytest.mark.parametrize("levels", [None, 2])
@pytest.mark.parametrize("block_bytes", [64, 1000, 1 << 30])
def test_recall_matches_brute_force_reference(levels, block_bytes):
    for seed in range(3):
        scores, text_image = random_set(seed, levels=levels)
        img, txt = features_for(scores)
        ranks = retrieval_ranks(img, txt, text_image, block_bytes=block_bytes)
        recalls = ranks.recalls()
        for k in (1, 5, 10):
            ref_i2t, ref_t2i = brute_force_hits(scores, text_image, k)
            np.testing.assert_array_equal(ranks.image_to_text < k, ref_i2t)
            np.testing.assert_array_equal(ranks.text_to_image < k, ref_t2i)
            assert recalls[f"text_retrieval_recall@{k}"] == pytest.approx(100 * ref_i2t.mean())
            assert recalls[f"image_retrieval_recall@{k}"] == pytest.approx(100 * ref_t2i.mean())
        six = [v for m, v in recalls.items() if m != "mean_recall"]
        assert len(six) == 6 and recalls["mean_recall"] == pytest.approx(np.mean(six))


def test_ties_favour_the_lower_index():
    # every score equal: rank = number of candidates before the first true match
    text_image = np.array([0, 0, 1, 1, 2])
    ranks = retrieval_ranks(np.ones((3, 2), np.float32), np.ones((5, 2), np.float32), text_image)
    np.testing.assert_array_equal(ranks.image_to_text, [0, 2, 4])
    np.testing.assert_array_equal(ranks.text_to_image, [0, 0, 1, 1, 2])
    r = ranks.recalls(ks=(1, 3))
    assert r["text_retrieval_recall@1"] == pytest.approx(100 / 3)
    assert r["text_retrieval_recall@3"] == pytest.approx(200 / 3)
    assert r["image_retrieval_recall@1"] == pytest.approx(40.0)
    assert r["image_retrieval_recall@3"] == 100.0


def test_a_tie_with_a_wrong_candidate_before_it_is_a_miss_at_1():
    # image 1's true caption (index 2) ties with caption 0 (image 0's): caption 0 comes first -> rank 1
    scores = np.array([[0.9, 0.1, 0.3], [0.5, 0.2, 0.5]], dtype=np.float32)
    text_image = np.array([0, 0, 1])
    ranks = retrieval_ranks(*features_for(scores), text_image)
    assert ranks.image_to_text.tolist() == [0, 1]
    # text->image: caption 1 belongs to image 0 (0.1) but image 1 scores 0.2 -> rank 1; the others rank first
    assert ranks.text_to_image.tolist() == [0, 1, 0]
    # the true match with the best score decides; a second true caption further down does not matter
    scores = np.array([[0.1, 0.8, 0.9]], dtype=np.float32)
    assert retrieval_ranks(*features_for(scores), np.array([0, 0, 0])).image_to_text.tolist() == [0]


def test_recall_is_any_true_match_in_top_k():
    # image 0 has three captions; only the third is retrieved first
    scores = np.array([[0.1, 0.2, 0.9, 0.5], [0.0, 0.0, 0.8, 0.9]], dtype=np.float32)
    text_image = np.array([0, 0, 0, 1])
    ranks = retrieval_ranks(*features_for(scores), text_image)
    assert ranks.image_to_text.tolist() == [0, 0]
    assert ranks.recalls(ks=(1,))["text_retrieval_recall@1"] == 100.0
    by_hand = RetrievalRanks(np.array([0, 3]), np.array([0, 1, 5]))
    assert by_hand.recalls(ks=(1, 5)) == pytest.approx({
        "text_retrieval_recall@1": 50.0, "text_retrieval_recall@5": 100.0, "image_retrieval_recall@1": 100 / 3,
        "image_retrieval_recall@5": 200 / 3, "mean_recall": (50 + 100 + 100 / 3 + 200 / 3) / 4})


def test_scores_are_never_held_whole():
    rng = np.random.default_rng(0)
    n_img, n_txt, block = 400, 2000, 100_000
    img = rng.standard_normal((n_img, 16)).astype(np.float32)
    txt = rng.standard_normal((n_txt, 16)).astype(np.float32)
    text_image = np.arange(n_txt) % n_img
    full_matrix = n_img * n_txt * 4  # 3.2 MB of float32 scores
    tracemalloc.start()
    retrieval_ranks(img, txt, text_image, block_bytes=block)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # 1.25 x the block (scores + one boolean temporary) plus small fixed buffers, as the module docstring states
    assert peak < 1.25 * block + 150_000 < full_matrix / 8


def test_bad_inputs_are_errors():
    with pytest.raises(ClipBenchError, match="image 1 has no caption"):
        retrieval_ranks(np.ones((2, 2), np.float32), np.ones((1, 2), np.float32), np.array([0]))
    with pytest.raises(ClipBenchError, match="NaN"):
        retrieval_ranks(np.full((1, 2), np.nan, np.float32), np.ones((1, 2), np.float32), np.array([0]))
    with pytest.raises(ClipBenchError, match="no '\\{\\}'"):
        apply_template(["a cat"], "a photo of")


def test_templates_and_flattening():
    assert apply_template(["a cat {x}"], "a photo of {}.") == ["a photo of a cat {x}."]
    texts, owner = flatten_captions([["a"], ["b", "c"], ["d"]], np.array([2, 1]))
    assert texts == ["d", "b", "c"] and owner.tolist() == [0, 1, 1]


def test_mean_recall_at_1_is_the_mean_of_the_two_recalls_at_1():
    """DataComp's summary, by hand: image 0's best caption is its own (hit), image 1's is not (miss): 50%; of the
    three captions two find their image first: 66.7%; mean_recall@1 = 58.3%, whatever happens at k = 5 or 10."""
    by_hand = RetrievalRanks(np.array([0, 3]), np.array([0, 1, 0]))
    rows = by_hand.recalls(summary="mean_recall@1")
    assert list(rows) == [*(f"text_retrieval_recall@{k}" for k in (1, 5, 10)),
                          *(f"image_retrieval_recall@{k}" for k in (1, 5, 10)), "mean_recall@1"]
    assert rows["mean_recall@1"] == pytest.approx((50.0 + 200 / 3) / 2)
    assert by_hand.summary("mean_recall") == pytest.approx((50 + 100 + 100 + 200 / 3 + 100 + 100) / 6)
    assert parse_metric("mean_recall@1") == ("mean", 1) and parse_metric("mean_recall") == ("mean", 0)
    with pytest.raises(ClipBenchError, match="not a retrieval summary"):
        by_hand.summary("top1")
