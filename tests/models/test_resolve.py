"""Model names resolve to the right open_clip architecture and weights, without any download."""

from __future__ import annotations

import pytest
import torch

from clip_bench.models.resolve import OPENAI_ALIASES, load_model, resolve_model
from clip_bench.util.errors import ClipBenchError, UnknownNameError


@pytest.mark.parametrize("name", list(OPENAI_ALIASES))
def test_openai_names_map_to_quickgelu_with_openai_weights(name):
    spec = resolve_model(name)
    assert spec.arch.endswith("-quickgelu") and spec.weights == "openai" and spec.pretrained == "openai"
    assert spec.arch_config.get("quick_gelu") is True
    assert spec.preprocess_config["mean"] == [0.48145466, 0.4578275, 0.40821073]


def test_openclip_name_with_tag():
    spec = resolve_model("ViT-B-32", "laion2b_s34b_b79k")
    assert spec.weights_id == "tag:laion2b_s34b_b79k"
    assert spec.fingerprint != resolve_model("ViT-B-32", "openai").fingerprint


def test_unknown_name_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean: ViT-B-32"):
        resolve_model("VIT-B-32")


def test_checkpoint_is_loaded_without_unpickling_code(tmp_path):
    """A .pt checkpoint holding a pickled object is refused (weights_only), not executed."""

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    ckpt = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, ckpt)
    from clip_bench.util.resources import assets_dir

    cfg = assets_dir() / "tiny_clip" / "tiny-clip-digits.json"
    with pytest.raises(ClipBenchError, match="refused to load checkpoint"):
        load_model(str(cfg), str(ckpt), device="cpu")


def test_pt_checkpoint_loads(tmp_path):
    from safetensors.torch import load_file

    from clip_bench.util.resources import assets_dir

    state = load_file(str(assets_dir() / "tiny_clip" / "tiny-clip-digits.safetensors"))
    ckpt = tmp_path / "tiny.pt"
    torch.save({k: v.float() for k, v in state.items()}, ckpt)
    lm = load_model(str(assets_dir() / "tiny_clip" / "tiny-clip-digits.json"), str(ckpt), device="cpu")
    assert torch.allclose(lm.model.visual.proj, state["visual.proj"].float())


def test_unreachable_tag_is_one_clear_sentence(monkeypatch):
    import open_clip.pretrained as pre

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(pre, "download_pretrained_from_hf", offline)
    monkeypatch.setattr(pre, "download_pretrained_from_url", offline)
    with pytest.raises(ClipBenchError) as err:
        load_model("RN50", device="cpu")
    msg = str(err.value)
    assert "RN50-quickgelu" in msg and "'openai'" in msg and "\n" not in msg


# Fingerprints and tokenizer ids name every existing cache entry: refactoring the model code must not move them.
PINNED = [
    (("tiny-clip-digits", None), "c5cfd331f87dbc04d87b", "604ccb2e6772c454"),
    (("ViT-B/32", None), "aa60080833f05c94e838", "4cdc25545c1b0370"),
    (("ViT-B-32", "laion2b_s34b_b79k"), "3800b41feff33a049d3b", "4cdc25545c1b0370"),
    (("ViT-B-32", None), "fba3f370124a1c1270d8", "4cdc25545c1b0370"),
    (("RN50", None), "a8853682c1d2ab9c8e94", "4cdc25545c1b0370"),
]


@pytest.mark.parametrize("ref, fingerprint, tok", PINNED)
def test_open_clip_fingerprints_and_tokenizer_ids_are_pinned(ref, fingerprint, tok):
    from clip_bench.models.resolve import ModelHandle

    handle = ModelHandle.of(ref[0], ref[1], device="cpu")
    assert (handle.fingerprint, handle.tokenizer_id) == (fingerprint, tok)


def test_custom_architecture_loads_without_writing_a_config_file(tmp_path, monkeypatch):
    import tempfile

    shared_tmp = tmp_path / "tmp"
    shared_tmp.mkdir()
    (shared_tmp / "clip_bench_configs").write_text("another user's")  # not a folder this user can write into
    monkeypatch.setattr(tempfile, "tempdir", str(shared_tmp))
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.rglob("*"))
    lm = load_model("tiny-clip-digits", device="cpu")
    with torch.no_grad():
        emb = lm.encode_text(lm.tokenize(["a handwritten 3."]))
    assert emb.shape == (1, 64) and torch.isfinite(emb).all()
    new = [p for p in sorted(tmp_path.rglob("*")) if p not in before]
    ours = [p for p in new if not any(part.startswith("torchinductor_") for part in p.relative_to(tmp_path).parts)]
    assert ours == [], ours  # nothing written, neither in $TMPDIR nor here (torch's own cache folder aside)
    assert (shared_tmp / "clip_bench_configs").read_text() == "another user's"
