"""Zero-shot retrieval scoring at MSCOCO size: time and peak memory of clip-bench's blocked recall@k,
side by side with a full-matrix reference (the whole images x captions score matrix + torch.topk, as
CLIP_benchmark scores retrieval), on the same synthetic cached-style features.

    python benchmarks/bench_retrieval.py                      # 5,000 images x 25,000 captions, D = 768
    python benchmarks/bench_retrieval.py --images 1000 --captions-per-image 5 --dim 512

Features are what the caches hold: image features float16 (as the feature cache stores them), caption
embeddings float32 and L2-normalised (as the text cache stores them), correlated so that recalls are
neither 0 nor 100. Each variant runs in its own fresh child process; peak memory is the child's
maximum resident set size minus its resident size just before scoring (features loaded from .npy files as
a cache hit loads them); the NumPy allocations traced by tracemalloc are printed too (torch's are not traced).
Both variants must give the same six recalls (random data has no exact ties).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import tracemalloc

import numpy as np

NOISE = 9.0  # caption = its image's embedding + a random direction 9x as long (recalls well inside 0-100 at COCO size)


def make_features(n_img: int, per_image: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic (images float16, captions float32 normalised, caption->image index)."""
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((n_img, dim), dtype=np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    text_image = np.repeat(np.arange(n_img), per_image)
    noise = rng.standard_normal((len(text_image), dim), dtype=np.float32) / np.sqrt(dim)  # unit-norm-ish noise
    txt = img[text_image] + NOISE * noise
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    return img.astype(np.float16), txt.astype(np.float32), text_image


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_clip_bench(img: np.ndarray, txt: np.ndarray, text_image: np.ndarray, block_mb: int) -> dict[str, float]:
    from clip_bench.metrics.retrieval import l2_normalize, retrieval_ranks

    ranks = retrieval_ranks(l2_normalize(img), txt, text_image, block_bytes=block_mb * 2**20)
    return ranks.recalls()


def run_full_matrix(img: np.ndarray, txt: np.ndarray, text_image: np.ndarray, block_mb: int) -> dict[str, float]:
    """The reference: the whole score matrix in memory, top-10 per query with torch.topk."""
    import torch

    im = torch.nn.functional.normalize(torch.from_numpy(img.astype(np.float32)), dim=-1)
    scores = im @ torch.from_numpy(txt).T  # (images, captions), float32
    owner = torch.from_numpy(text_image)
    top_txt = torch.topk(scores, 10, dim=1).indices  # image -> text
    top_img = torch.topk(scores.T, 10, dim=1).indices  # text -> image
    out = {}
    for k in (1, 5, 10):
        hit = (owner[top_txt[:, :k]] == torch.arange(len(img))[:, None]).any(dim=1)
        out[f"text_retrieval_recall@{k}"] = 100.0 * hit.double().mean().item()
    for k in (1, 5, 10):
        hit = (top_img[:, :k] == owner[:, None]).any(dim=1)
        out[f"image_retrieval_recall@{k}"] = 100.0 * hit.double().mean().item()
    out["mean_recall"] = float(np.mean(list(out.values())))
    return out


def _child(which: str, args: dict, queue: mp.Queue) -> None:
    import torch

    torch.set_num_threads(args["threads"])
    folder = args["folder"]
    # as a cache hit reads them: image features memory-mapped float16, caption embeddings float32
    img = np.load(os.path.join(folder, "images.npy"), mmap_mode="r")
    txt = np.load(os.path.join(folder, "captions.npy"))
    text_image = np.load(os.path.join(folder, "text_image.npy"))
    fn = {"clip-bench": run_clip_bench, "full-matrix": run_full_matrix}[which]
    per = args["per_image"]
    fn(img[:50], txt[: 50 * per], text_image[: 50 * per], args["block_mb"])  # warm-up (imports, BLAS)
    img = np.asarray(img)  # page the features in before the baseline
    base, max_before = _rss_mb(), _max_rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    recalls = fn(img, txt, text_image, args["block_mb"])
    seconds = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    queue.put({"which": which, "seconds": seconds, "peak_mb": _max_rss_mb() - base, "traced_mb": traced,
               "max_rss_before_mb": max_before, "rss_before_mb": base, "recalls": recalls,
               "features_mb": (img.nbytes + txt.nbytes) / 2**20})


def measure(which: str, args: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(which, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--captions-per-image", type=int, default=5)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--block-mb", type=int, default=128, help="clip-bench's score block (the default is 128)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-reference", action="store_true",
                   help="only clip-bench (e.g. sizes whose full matrix won't fit)")
    a = p.parse_args()
    args = {"images": a.images, "per_image": a.captions_per_image, "dim": a.dim, "block_mb": a.block_mb,
            "threads": a.threads}
    n_txt = a.images * a.captions_per_image
    print(f"{a.images:,} images x {n_txt:,} captions, D = {a.dim}, {a.threads} thread(s); "
          f"a full float32 score matrix is {a.images * n_txt * 4 / 2**20:,.0f} MB", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        img, txt, text_image = make_features(a.images, a.captions_per_image, a.dim)
        for name, arr in (("images", img), ("captions", txt), ("text_image", text_image)):
            np.save(os.path.join(folder, f"{name}.npy"), arr)
        del img, txt, text_image
        args["folder"] = folder
        results = [measure("clip-bench", args)]
        if not a.skip_reference:
            results.append(measure("full-matrix", args))
    for r in results:
        print(f"{r['which']:<12} {r['seconds']:7.2f} s   peak RSS +{r['peak_mb']:5.0f} MB above the loaded features "
              f"({r['features_mb']:.0f} MB; RSS {r['rss_before_mb']:.0f} MB, earlier max {r['max_rss_before_mb']:.0f} "
              f"MB), NumPy-traced peak {r['traced_mb']:.0f} MB   mean_recall {r['recalls']['mean_recall']:.3f}")
    if len(results) == 2:
        ours, ref = results
        diff = max(abs(ours["recalls"][m] - ref["recalls"][m]) for m in ours["recalls"])
        print(f"ratio: time {ref['seconds'] / ours['seconds']:.2f}x (reference / clip-bench), "
              f"peak memory {ref['peak_mb'] / max(ours['peak_mb'], 1e-9):.1f}x smaller; max |recall difference| "
              f"{diff:.2e}")
        print(json.dumps({"clip-bench": ours["recalls"], "full-matrix": ref["recalls"]}, indent=1))
        return 0 if diff < 1e-6 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
