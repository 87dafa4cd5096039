"""Model checkpoints the tests write: the tiny CLIP saved as a user's own open_clip checkpoint folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from clip_bench.util.resources import assets_dir


def checkpoint_folder(folder: Path, perturb: bool) -> Path:
    """The tiny CLIP as ``tiny.json`` + ``epoch_32.safetensors`` in `folder` (other weights with `perturb`)."""
    from safetensors.torch import load_file, save_file

    folder.mkdir(parents=True)
    shutil.copy(assets_dir() / "tiny_clip" / "tiny-clip-digits.json", folder / "tiny.json")
    state = load_file(str(assets_dir() / "tiny_clip" / "tiny-clip-digits.safetensors"))
    if perturb:  # noise on the image projection: a weaker model
        import torch

        proj = state["visual.proj"]
        state["visual.proj"] = proj + proj.std() * torch.randn(proj.shape, generator=torch.Generator().manual_seed(0))
    save_file(state, str(folder / "epoch_32.safetensors"))
    return folder
