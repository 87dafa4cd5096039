"""Prompt-engine benchmark: clip-bench's classifier build against open_clip's, same model, same process.

Model: the ViT-B-32 architecture with random weights (timing does not need trained weights).
Prompts: the 80 ImageNet templates over the first N ImageNet classes (default 50).
Prints the cold speed ratio (no cache), the warm ratio (text cache on disk) and the max |difference|.

    python benchmarks/bench_prompts.py [--classes 50] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import numpy as np
import open_clip
import torch

from clip_bench.models.resolve import load_model
from clip_bench.protocols.zeroshot_head import zeroshot_classifier
from clip_bench.util.resources import data_dir


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    prompts = json.loads((data_dir("prompts") / "imagenet.json").read_text())
    names, templates = prompts["classnames"][: args.classes], prompts["templates"]
    lm = load_model("ViT-B-32", device="cpu")

    t_ref, ref = best_of(lambda: open_clip.build_zero_shot_classifier(
        lm.model, lm.tokenizer, names, templates, num_classes_per_batch=10, device="cpu").numpy(), args.repeats)
    t_cold, ours = best_of(lambda: zeroshot_classifier(lm, names, templates), args.repeats)
    with tempfile.TemporaryDirectory() as cache:
        zeroshot_classifier(lm, names, templates, cache_dir=cache)  # fill the cache
        t_warm, warm = best_of(lambda: zeroshot_classifier(lm, names, templates, cache_dir=cache), args.repeats)
    diff = float(np.abs(ours - ref).max())
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}")
    print(f"classifier: {len(names)} classes x {len(templates)} templates = {len(names) * len(templates)} prompts, "
          "ViT-B-32")
    print(f"open_clip build_zero_shot_classifier: {t_ref:.2f} s")
    print(f"clip-bench cold (no cache):           {t_cold:.2f} s   speed-up {t_ref / t_cold:.1f}x")
    print(f"clip-bench warm (text cache):         {t_warm:.3f} s   speed-up {t_ref / t_warm:.0f}x")
    print(f"max |clip-bench - open_clip|: {diff:.2e} (warm: {float(np.abs(warm - ref).max()):.2e})")


if __name__ == "__main__":
    main()
