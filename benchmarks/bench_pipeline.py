"""Pipeline efficiency: end-to-end zero-shot images/s on an on-disk JPEG ImageFolder, divided by the
images/s of the bare model forward pass on the same preprocessed batches (the physical limit).

Model: ViT-B-32 architecture, random weights (compute is what matters). Data: N JPEGs (320x240)
written to a temp ImageFolder of 10 classes. Both are measured in one process, best of R runs.

    python benchmarks/bench_pipeline.py [--images 512] [--workers 1] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clip_bench import zeroshot
from clip_bench.config import EvalConfig, ExtractConfig
from clip_bench.loaders.imagefolder import list_images
from clip_bench.models.resolve import load_model


def write_folder(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / "data" / "bench" / "test" / str(i % 10)
        d.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, size=(30, 40, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((320, 240), Image.BICUBIC)
        img.save(d / f"{i:05d}.jpg", quality=90)
    task = root / "bench.yaml"
    task.write_text("name: bench\nversion: 1\nprompts: digits\nmetric: accuracy\nsplits: [test]\n"
                    "sources:\n  local: {loader: imagefolder, path: bench}\n")
    return task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load_model("ViT-B-32", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        task = write_folder(root, args.images)
        files = list_images(root / "data" / "bench" / "test")
        batches = [torch.stack([lm.preprocess(Image.open(f).convert("RGB")) for f in files[i:i + args.batch_size]])
                   for i in range(0, len(files), args.batch_size)]
        bare = e2e = float("inf")
        for r in range(args.repeats):  # interleaved, best of each, so background load hits both alike
            t0 = time.perf_counter()
            with torch.inference_mode():
                for b in batches:
                    lm.model.encode_image(b)
            bare = min(bare, time.perf_counter() - t0)
            cfg = EvalConfig(data_root=root / "data", cache_dir=root / f"cache{r}", output_dir=None,
                             extract=ExtractConfig(batch_size=args.batch_size, workers=args.workers, quiet=True))
            t0 = time.perf_counter()
            zeroshot(lm, str(task), cfg)  # cold caches: decode, preprocess, forward, cache write, text, scoring
            e2e = min(e2e, time.perf_counter() - t0)
        n = len(files)
    print(f"{n} JPEGs, ViT-B-32, batch {args.batch_size}, {args.workers} loader worker(s), "
          f"{torch.get_num_threads()} torch threads")
    print(f"bare model forward: {n / bare:.1f} img/s")
    print(f"clip-bench zeroshot end to end, cold caches: {n / e2e:.1f} img/s")
    print(f"pipeline efficiency: {bare / e2e:.2f}")


if __name__ == "__main__":
    main()
