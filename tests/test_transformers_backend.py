"""The transformers backend: parity with transformers' own forward pass, trimming, fingerprints, errors.

Tiny CLIPModel/SiglipModel checkpoints are written with save_pretrained (random weights: parity is
exact), plus clip-bench's tiny open_clip CLIP converted to a CLIPModel (real zero-shot skill).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from hf_fixtures import convert_tiny_open_clip, write_tiny_clip, write_tiny_siglip  # noqa: E402

from clip_bench.errors import ClipBenchError  # noqa: E402
from clip_bench.features import encode_images  # noqa: E402
from clip_bench.models import load_model, resolve_model  # noqa: E402
from clip_bench.tiny_clip import TRAIN_TEMPLATES  # noqa: E402
from clip_bench.zeroshot_head import zeroshot_classifier, zeroshot_logits  # noqa: E402

NAMES = [str(i) for i in range(10)]
TEMPLATES = [*TRAIN_TEMPLATES, "{} drawn by a much longer and rather unusual hand, seen in a photo"]
CORPUS = [t.format(n) for t in TEMPLATES for n in [*NAMES, "zero", "one", "seven"]]


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {"clip": write_tiny_clip(root / "clip"), "siglip": write_tiny_siglip(root / "siglip", CORPUS)}


@pytest.fixture(scope="module")
def digits_test():
    """The digits test split as PIL images (the same images clip-bench's loader serves)."""
    from clip_bench.loaders import load_split
    from clip_bench.tasks import get_task

    data = load_split(get_task("digits"), None, "test", "/nonexistent", False)
    idx = range(0, len(data.targets), 3)  # 120 images keep the test quick
    return [data.load_image(i) for i in idx], np.asarray(data.targets)[list(idx)]


def _reference_logits(folder: Path, images, siglip: bool) -> np.ndarray:
    """Zero-shot logits computed directly with transformers: get_text_features / get_image_features."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    proc = AutoImageProcessor.from_pretrained(folder, backend="pil")
    cols = []
    with torch.no_grad():
        for name in NAMES:
            prompts = [t.format(name) for t in TEMPLATES]
            if siglip:  # as SigLIP was trained: padded to 64, no attention mask (pad = eos, attended)
                inputs = {"input_ids": tok(prompts, padding="max_length", max_length=64, return_tensors="pt")["input_ids"]}
            else:  # transformers' usual CLIP call: padded to the longest prompt, with its attention mask
                inputs = dict(tok(prompts, padding=True, return_tensors="pt"))
            emb = model.get_text_features(**inputs)
            emb = (emb if isinstance(emb, torch.Tensor) else emb.pooler_output).double()  # the head maths in float64
            emb = emb / emb.norm(dim=-1, keepdim=True)
            mean = emb.mean(dim=0)
            cols.append(mean / mean.norm())
        w = torch.stack(cols, dim=1)
        pixels = proc(images=images, return_tensors="pt")["pixel_values"]
        feats = model.get_image_features(pixel_values=pixels)
        feats = (feats if isinstance(feats, torch.Tensor) else feats.pooler_output).double()
        feats = feats / feats.norm(dim=-1, keepdim=True)
    return (100 * feats @ w).numpy()


def _clip_bench_logits(lm, images) -> np.ndarray:
    """clip-bench's path: its preprocessing callable, encode_images, the prompt engine, the zero-shot head."""
    batch = torch.stack([lm.preprocess(im) for im in images])
    with torch.inference_mode():
        feats = encode_images(lm, batch).float().numpy()
    return zeroshot_logits(feats, zeroshot_classifier(lm, NAMES, TEMPLATES))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_zeroshot_logits_match_transformers_forward(hf_dirs, digits_test, kind):
    images, _ = digits_test
    lm = load_model(str(hf_dirs[kind]), device="cpu")  # a plain folder path: detected by its config.json
    assert lm.spec.backend == "transformers" and lm.spec.arch == kind
    ours = _clip_bench_logits(lm, images)
    ref = _reference_logits(hf_dirs[kind], images, siglip=kind == "siglip")
    assert ours.shape == ref.shape == (len(images), 10)
    # The forward passes agree to the last bit; clip-bench's head computes in float64 and rounds once, so
    # the logits agree to float32 rounding (bound: 1e-5 absolute, for CLIP and SigLIP).
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
    assert (ours.argmax(1) == ref.argmax(1)).all()


def test_clip_padding_trim_is_exact_and_really_cuts(hf_dirs):
    from clip_bench.text_encoder import encode_prompts

    lm = load_model(str(hf_dirs["clip"]), device="cpu")
    prompts = [t.format(n) for t in TEMPLATES for n in NAMES]
    trimmed = encode_prompts(lm, prompts, batch_size=7, trim=True)
    full = encode_prompts(lm, prompts, batch_size=7, trim=False)
    assert np.abs(trimmed - full).max() < 1e-6
    seen = []
    hook = lm.model.text_model.encoder.register_forward_pre_hook(lambda m, a, k: seen.append(k["inputs_embeds"].shape[1]),
                                                                 with_kwargs=True)
    try:
        encode_prompts(lm, ["the digit 3"], trim=True)
        encode_prompts(lm, ["the digit 3"], trim=False)
    finally:
        hook.remove()
    assert seen[0] < 10 and seen[1] == 77  # trimmed to the prompt; untrimmed is the full context


def test_siglip_is_never_trimmed_and_pads_to_max_length(hf_dirs):
    lm = load_model(str(hf_dirs["siglip"]), device="cpu")
    tokens = lm.tokenize(["the digit 3", 'a photo of the number: "7".'])
    assert tokens.shape == (2, 64) and lm.trim_positions(tokens) is None
    eos = lm.tokenizer.eos_token_id
    assert (tokens[:, -1] == eos).all()  # padded with eos up to the last position, which SigLIP pools


def test_siglip_bias_leaves_the_ranking_unchanged(hf_dirs, digits_test):
    """Rows rank classes by 100·cos; SigLIP's own scale·cos + bias (and its sigmoid) rank them identically."""
    images, _ = digits_test
    lm = load_model(str(hf_dirs["siglip"]), device="cpu")
    scale, bias = lm.logit_params()
    assert bias == pytest.approx(-3.5) and scale == pytest.approx(np.exp(2.0), rel=1e-6)
    logits = _clip_bench_logits(lm, images)
    own = torch.sigmoid(torch.from_numpy(logits / 100 * scale + bias)).numpy()
    assert (own.argmax(1) == logits.argmax(1)).all()
    # and the model's own forward pass (one template, no ensembling) gives exactly scale·cos + bias
    batch = torch.stack([lm.preprocess(im) for im in images[:4]])
    tokens = lm.tokenize([TEMPLATES[0].format(n) for n in NAMES])
    with torch.no_grad():
        out = lm.model(input_ids=tokens, pixel_values=batch)
        img = torch.nn.functional.normalize(lm.encode_image(batch), dim=-1)
        txt = torch.nn.functional.normalize(lm.encode_text(tokens), dim=-1)
    assert torch.allclose(out.logits_per_image, scale * img @ txt.T + bias, atol=1e-4)


def test_pre_projection_features(hf_dirs, digits_test):
    images, _ = digits_test
    lm = load_model(str(hf_dirs["clip"]), device="cpu")
    batch = torch.stack([lm.preprocess(im) for im in images[:3]])
    with torch.no_grad():
        pre = encode_images(lm, batch, "pre-proj")
        emb = encode_images(lm, batch, "embed")
    assert pre.shape == (3, 32) and torch.allclose(lm.model.visual_projection(pre), emb, atol=1e-6)
    with pytest.raises(ClipBenchError, match="SigLIP has no image projection"):
        encode_images(load_model(str(hf_dirs["siglip"]), device="cpu"), batch, "pre-proj")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_fingerprint_covers_config_weights_and_preprocessing(hf_dirs, tmp_path):
    d = _copy(hf_dirs["clip"], tmp_path / "m")
    base = resolve_model(str(d))
    assert base.backend == "transformers" and resolve_model(f"transformers:{d}").fingerprint == base.fingerprint
    assert base.provenance()["backend_version"]

    pp = json.loads((d / "preprocessor_config.json").read_text())
    pp["image_mean"] = [0.5, 0.5, 0.5]
    (d / "preprocessor_config.json").write_text(json.dumps(pp))
    after_pp = resolve_model(str(d))
    assert after_pp.fingerprint != base.fingerprint

    from safetensors.torch import load_file, save_file

    state = load_file(str(d / "model.safetensors"))
    state["logit_scale"] = state["logit_scale"] + 1
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    after_w = resolve_model(str(d))
    assert after_w.fingerprint != after_pp.fingerprint

    cfg = json.loads((d / "config.json").read_text())
    cfg["text_config"]["layer_norm_eps"] = 1e-6
    (d / "config.json").write_text(json.dumps(cfg))
    after_cfg = resolve_model(str(d))
    assert after_cfg.fingerprint != after_w.fingerprint and after_cfg.tokenizer_id == base.tokenizer_id

    tc = json.loads((d / "tokenizer_config.json").read_text())
    tc["model_max_length"] = 76
    (d / "tokenizer_config.json").write_text(json.dumps(tc))
    assert resolve_model(str(d)).tokenizer_id != base.tokenizer_id


def test_clear_errors(hf_dirs, tmp_path):
    d = _copy(hf_dirs["clip"], tmp_path / "m")
    with pytest.raises(ClipBenchError, match="--pretrained openai cannot be used with"):
        resolve_model(str(d), "openai")
    with pytest.raises(ClipBenchError, match="--revision applies to hub models, not to the local folder"):
        resolve_model(str(d), revision="v1")
    (d / "preprocessor_config.json").unlink()
    with pytest.raises(ClipBenchError, match="no preprocessor_config.json"):
        resolve_model(str(d))
    other = _copy(hf_dirs["clip"], tmp_path / "bert")
    cfg = json.loads((other / "config.json").read_text())
    cfg["model_type"] = "bert"
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ClipBenchError, match="model_type 'bert'; the transformers backend reads clip and siglip"):
        resolve_model(str(other))
    with pytest.raises(ClipBenchError, match="does not exist"):
        resolve_model(f"transformers:{tmp_path / 'nowhere'}")


def test_weights_that_do_not_fill_the_model_are_an_error(hf_dirs, tmp_path):
    """transformers would warn and initialise the missing weights at random; clip-bench refuses."""
    from safetensors.torch import load_file, save_file

    d = _copy(hf_dirs["clip"], tmp_path / "m")
    state = load_file(str(d / "model.safetensors"))
    del state["visual_projection.weight"]
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ClipBenchError, match=r"does not fill its CLIPModel: 1 missing keys \(visual_projection.weight\)"):
        load_model(str(d), device="cpu")


@pytest.mark.slow
def test_converted_tiny_clip_keeps_its_skill_through_both_backends(tmp_path, eval_config):
    """tiny-clip-digits as a transformers CLIPModel: the same top-1 (91.67) and the same predictions."""
    from clip_bench.evaluate import zeroshot

    folder = convert_tiny_open_clip(tmp_path / "tiny-hf")
    rows_hf = zeroshot(str(folder), "digits", eval_config)
    rows_oc = zeroshot("tiny-clip-digits", "digits", eval_config)
    top1 = {r["extra"]["backend"]: r["value"] for r in rows_hf + rows_oc if r["metric"] == "top1"}
    assert top1 == {"transformers": pytest.approx(91.67, abs=0.01), "open_clip": pytest.approx(91.67, abs=0.01)}
    # the embeddings themselves agree (same maths, fp32 vs fp16 weights aside)
    lm_hf, lm_oc = load_model(str(folder), device="cpu"), load_model("tiny-clip-digits", device="cpu")
    w_hf = zeroshot_classifier(lm_hf, NAMES, TEMPLATES)
    w_oc = zeroshot_classifier(lm_oc, NAMES, TEMPLATES)
    assert np.abs(w_hf - w_oc).max() < 1e-4


@pytest.mark.slow
def test_hub_reference_is_pinned_and_loads_from_the_cache(hf_dirs, tmp_path, monkeypatch, capsys):
    """``transformers:org/repo`` with ``--revision``: resolved to a commit (mocked hub), files read at that commit."""
    import huggingface_hub.constants as hc

    from clip_bench.backends import hub
    from clip_bench.cli import main

    commit = "c" * 40
    repo_dir = tmp_path / "hub" / "models--clip-bench-test--tiny-hf-clip"
    shutil.copytree(hf_dirs["clip"], repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "v1").write_text(commit)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    calls = []

    def remote_commit(repo_id, revision):
        calls.append((repo_id, revision))
        if revision == "v1":
            return commit
        raise ConnectionError("no route to host")

    monkeypatch.setattr(hub, "remote_commit", remote_commit)
    spec = resolve_model("transformers:clip-bench-test/tiny-hf-clip@v1")
    assert spec.revision == commit and spec.weights_id.endswith("@" + commit) and spec.backend == "transformers"
    local = resolve_model(str(hf_dirs["clip"]))
    assert spec.fingerprint != local.fingerprint  # the same files, but identified by commit, not content
    code = main(["zeroshot", "--model", "transformers:clip-bench-test/tiny-hf-clip", "--revision", "v1",
                 "--task", "digits", "--limit", "20", "--workers", "0", "--quiet", "--format", "json",
                 "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["extra"]["revision"] for r in rows} == {commit}
    assert {r["model"] for r in rows} == {"transformers:clip-bench-test/tiny-hf-clip@v1"}
    assert ("clip-bench-test/tiny-hf-clip", "v1") in calls
    # the hub unreachable and no cached ref for main: one clear line
    with pytest.raises(ClipBenchError, match="cannot pin transformers:clip-bench-test/tiny-hf-clip"):
        resolve_model("transformers:clip-bench-test/tiny-hf-clip")
