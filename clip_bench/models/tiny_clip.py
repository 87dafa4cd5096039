"""Train the tiny CLIP that the tests and the quickstart use: a real zero-shot model for `digits`.

``python -m clip_bench.models.tiny_clip --out clip_bench/assets/tiny_clip`` trains it deterministically on
the CPU (about a minute) on the digits train split, with several caption templates, and writes an
open_clip architecture JSON plus a safetensors checkpoint (fp16, ~7 MB; unused token rows are zero).
Random weights cannot tell a correct pipeline from a broken one; this model can.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

NAME = "tiny-clip-digits"
CONFIG = {
    "embed_dim": 64,
    "quick_gelu": False,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TRAIN_TEMPLATES = (
    'a photo of the number: "{}".',
    "a handwritten {}.",
    "the digit {}",
    "an image of the number {}.",
    "{}",
    "a blurry photo of a {}.",
)
CLASSNAMES = [str(i) for i in range(10)]


def _augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 pixels (deterministic given the generator)."""
    pad = F.pad(images, (2, 2, 2, 2))
    out = torch.empty_like(images)
    offs = torch.randint(0, 5, (images.shape[0], 2), generator=gen)
    for i, (dy, dx) in enumerate(offs.tolist()):
        out[i] = pad[i, :, dy : dy + 32, dx : dx + 32]
    return out


def train(out_dir: str | Path, seed: int = 0, steps: int = 1000, batch_size: int = 128, quiet: bool = False) -> Path:
    """Train the tiny CLIP and write ``tiny-clip-digits.{json,safetensors}`` into `out_dir`."""
    import open_clip
    from safetensors.torch import save_file

    from clip_bench.loaders.digits import digits_arrays

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = out_dir / f"{NAME}.json"
    cfg_path.write_text(json.dumps(CONFIG, indent=2) + "\n")
    open_clip.add_model_config(cfg_path)
    model, _, preprocess = open_clip.create_model_and_transforms(NAME, pretrained=None)
    tokenizer = open_clip.get_tokenizer(NAME)

    images, labels = digits_arrays("train", 32)
    pil = [__import__("PIL.Image", fromlist=["Image"]).fromarray(im).convert("RGB") for im in images]
    x_all = torch.stack([preprocess(p) for p in pil])
    y_all = torch.as_tensor(labels)
    tokens = tokenizer([t.format(c) for t in TRAIN_TEMPLATES for c in CLASSNAMES]).view(len(TRAIN_TEMPLATES), 10, -1)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(y_all), (batch_size,), generator=gen)
        x = _augment(x_all[idx], gen)
        t_idx = torch.randint(0, len(TRAIN_TEMPLATES), (1,), generator=gen).item()
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(tokens[t_idx]), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.T
        loss = F.cross_entropy(logits, y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
        if not quiet and step % 100 == 0:
            print(f"step {step:4d}  loss {loss.item():.3f}  ({time.perf_counter() - t0:.0f}s)")
    model.eval()
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    used = torch.unique(tokenizer([t.format(c) for t in TRAIN_TEMPLATES + ('a photo of the number: "{}".',)
                                   for c in CLASSNAMES]))
    mask = torch.zeros(state["token_embedding.weight"].shape[0], dtype=torch.bool)
    mask[used] = True
    state["token_embedding.weight"][~mask] = 0  # never trained; zero rows keep the file compressible
    ckpt = out_dir / f"{NAME}.safetensors"
    save_file(state, str(ckpt))
    return ckpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "assets" / "tiny_clip"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    path = train(args.out, args.seed, args.steps)
    print(f"wrote {path} in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
