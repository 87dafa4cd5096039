"""clip-bench against LAION's clip_benchmark (``pip install -e ".[bench]"``): same model, same data, same
80 templates, each tool run as its own command, timed wall-clock from the outside.

Data: scikit-learn's digits (all 1,797 images, 32x32), or with ``--classes N --per-class M`` N ImageNet
class names with M random-pattern images each (for a realistic ratio of prompts to images: ImageNet
has 80,000 prompts for 50,000 images), written once in clip_benchmark's WebDataset layout (classnames.txt,
zeroshot_classification_templates.txt, test/0.tar, test/nshards.txt), which
clip-bench reads with its `wds` loader. Templates: the 80 ImageNet templates for both tools.
Model (``--arch``): ``tiny`` = the shipped tiny CLIP (accuracies are meaningful), or ``ViT-B-32`` =
that architecture with seeded random weights saved to a .pt file that both tools load.
clip_benchmark runs in a child process that first registers the model's architecture JSON with
open_clip, then calls its own ``clip_benchmark eval`` command-line entry point unchanged.

    python benchmarks/bench_vs_clip_benchmark.py [--arch tiny|ViT-B-32] [--workers 1]
    python benchmarks/bench_vs_clip_benchmark.py --arch ViT-B-32 --classes 100 --per-class 5
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from clip_bench.util.resources import assets_dir, data_dir

# clip_benchmark 1.6.2's top-k helper calls float() on a 1-element array, which NumPy >= 2.3 refuses;
# the child swaps in a same-semantics top-k accuracy (the only change) before running its CLI unchanged.
CB_WRAPPER = """
import sys, open_clip, torch
open_clip.add_model_config(sys.argv[1])
sys.argv = ['clip_benchmark'] + sys.argv[2:]
import clip_benchmark.metrics.zeroshot_classification as zc
def accuracy(output, target, topk=(1,)):
    top = output.topk(max(topk), 1, True, True)[1]
    hit = top.eq(target.view(-1, 1))
    return [hit[:, :k].any(dim=1).float().mean().item() for k in topk]
zc.accuracy = accuracy
from clip_benchmark.cli import main
main()
"""


def dataset(classes: int, per_class: int) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Digits (classes == 10: real images the tiny CLIP knows), or N ImageNet class names with seeded
    random-pattern images (to set an ImageNet-like ratio of prompts to images)."""
    if classes == 10 and per_class == 0:
        from sklearn.datasets import load_digits

        d = load_digits()
        images = [(img / 16 * 255).round().astype(np.uint8).repeat(4, 0).repeat(4, 1) for img in d.images]
        return images, [int(y) for y in d.target], [str(i) for i in range(10)]
    rng = np.random.default_rng(0)
    names = json.loads((data_dir("prompts") / "imagenet.json").read_text())["classnames"][:classes]
    images, labels = [], []
    for c in range(classes):
        for _ in range(per_class):
            images.append(rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1))
            labels.append(c)
    return images, labels, names


def write_wds(root: Path, templates: list[str], classes: int, per_class: int) -> tuple[Path, int, int]:
    images, labels, names = dataset(classes, per_class)
    out = root / "wds_bench"
    (out / "test").mkdir(parents=True)
    (out / "classnames.txt").write_text("\n".join(names) + "\n")
    (root / "bench_prompts.json").write_text(json.dumps({"classnames": names, "templates": templates}))
    (out / "zeroshot_classification_templates.txt").write_text(
        "\n".join(t.replace("{}", "{c}") for t in templates) + "\n")
    (out / "test" / "nshards.txt").write_text("1\n")
    with tarfile.open(out / "test" / "0.tar", "w") as tf:
        for i, (arr, y) in enumerate(zip(images, labels)):
            buf = io.BytesIO()
            Image.fromarray(arr).convert("RGB").save(buf, format="PNG")
            for ext, data in (("png", buf.getvalue()), ("cls", str(int(y)).encode())):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return out, len(images), len(names)


def model_files(arch: str, root: Path) -> tuple[Path, Path, str]:
    """(architecture JSON, checkpoint, open_clip model name)."""
    if arch == "tiny":
        cfg = assets_dir() / "tiny_clip" / "tiny-clip-digits.json"
        return cfg, assets_dir() / "tiny_clip" / "tiny-clip-digits.safetensors", cfg.stem
    import open_clip
    import torch

    torch.manual_seed(0)
    cfg = root / f"bench-{arch}.json"
    cfg.write_text(json.dumps(open_clip.get_model_config(arch)))
    model = open_clip.create_model(arch)
    ckpt = root / f"bench-{arch}.pt"
    torch.save(model.state_dict(), ckpt)
    return cfg, ckpt, cfg.stem


def timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0, proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="tiny", help="tiny or an open_clip architecture such as ViT-B-32")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10, help="10 with --per-class 0: the digits; else synthetic")
    ap.add_argument("--per-class", type=int, default=0, help="images per synthetic class")
    args = ap.parse_args()
    try:
        import clip_benchmark  # noqa: F401
    except ImportError:
        print('clip_benchmark is not installed: pip install -e ".[bench]" to run this comparison.')
        return
    templates = json.loads((data_dir("prompts") / "imagenet.json").read_text())["templates"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wds, n_images, n_classes = write_wds(root, templates, args.classes, args.per_class)
        cfg, ckpt, name = model_files(args.arch, root)
        (root / "templates.json").write_text(json.dumps(templates))
        task = root / "digits_wds.yaml"
        task.write_text(f"name: bench_wds\nversion: 1\nprompts: {root / 'bench_prompts.json'}\nmetric: accuracy\n"
                        "splits: [test]\n"
                        f"sources:\n  wds: {{loader: wds, path: {wds.name}}}\n")

        cb_cmd = [sys.executable, "-c", CB_WRAPPER, str(cfg), "eval", "--dataset", "wds/bench", "--dataset_root",
                  str(wds), "--model", name, "--pretrained", str(ckpt), "--task", "zeroshot_classification",
                  "--batch_size", str(args.batch_size), "--num_workers", str(args.workers), "--no_amp",
                  "--output", str(root / "cb.json")]
        t_cb, _ = timed(cb_cmd, root)
        cb_top1 = 100 * json.loads((root / "cb.json").read_text())["metrics"]["acc1"]

        ours = [sys.executable, "-m", "clip_bench", "zeroshot", "--model", str(cfg), "--pretrained", str(ckpt),
                "--task", str(task), "--data-root", str(root), "--templates", str(root / "templates.json"),
                "--cache-dir", str(root / "cache"), "--output-dir", str(root / "out"), "--batch-size",
                str(args.batch_size), "--workers", str(args.workers), "--device", "cpu", "--format", "json", "--quiet"]
        t_cold, proc = timed(ours, root)
        top1 = next(r["value"] for r in json.loads(proc.stdout) if r["metric"] == "top1")
        t_warm, proc = timed(ours, root)
        top1_warm = next(r["value"] for r in json.loads(proc.stdout) if r["metric"] == "top1")
    kind = "digit" if args.per_class == 0 else "synthetic"
    print(f"model {args.arch}, {n_images} {kind} images (wds), {n_classes} classes x 80 templates = "
          f"{80 * n_classes} prompts, batch {args.batch_size}, {args.workers} worker(s), CPU")
    print(f"clip_benchmark eval:          {t_cb:7.1f} s   top-1 {cb_top1:.2f}")
    print(f"clip-bench zeroshot (cold):   {t_cold:7.1f} s   top-1 {top1:.2f}   {t_cb / t_cold:.1f}x faster")
    print(f"clip-bench zeroshot (warm):   {t_warm:7.1f} s   top-1 {top1_warm:.2f}   {t_cb / t_warm:.1f}x faster")
    print(f"top-1 difference: {abs(top1 - cb_top1):.2f} points")


if __name__ == "__main__":
    main()
