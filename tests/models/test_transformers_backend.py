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

from hf_fixtures import (  # noqa: E402
    convert_tiny_open_clip,
    set_layout,
    write_tiny_clip,
    write_tiny_siglip,
)

from clip_bench.cache.extract import encode_images  # noqa: E402
from clip_bench.models.resolve import load_model, resolve_model  # noqa: E402
from clip_bench.models.tiny_clip import TRAIN_TEMPLATES  # noqa: E402
from clip_bench.protocols.zeroshot_head import zeroshot_classifier, zeroshot_logits  # noqa: E402
from clip_bench.util.errors import ClipBenchError  # noqa: E402

NAMES = [str(i) for i in range(10)]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst

TEMPLATES = [*TRAIN_TEMPLATES, "{} drawn by a much longer and rather unusual hand, seen in a photo"]
CORPUS = [t.format(n) for t in TEMPLATES for n in [*NAMES, "zero", "one", "seven"]]


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints; the three ``clip-*`` hold the same CLIPModel as ``clip`` (same seed) with the image
    processor saved by ``CLIPProcessor.save_pretrained`` (the installed transformers' layout), then rewritten
    by hand in transformers 5's nested layout and in the flat layout, so both are read whatever the version."""
    root = tmp_path_factory.mktemp("hf")
    dirs = {"clip": write_tiny_clip(root / "clip"), "siglip": write_tiny_siglip(root / "siglip", CORPUS),
            "clip-processor": write_tiny_clip(root / "clip-processor", with_processor=True)}
    for layout in ("nested", "flat"):
        dirs[f"clip-{layout}"] = set_layout(_copy(dirs["clip-processor"], root / f"clip-{layout}"), layout)
    return dirs


@pytest.fixture(scope="module")
def digits_test():
    """The digits test split as PIL images (the same images clip-bench's loader serves)."""
    from clip_bench.loaders import load_split
    from clip_bench.tasks.catalog import get_task

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
                inputs = {"input_ids": tok(prompts, padding="max_length", max_length=64,
                                           return_tensors="pt")["input_ids"]}
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
@pytest.mark.parametrize("kind", ["clip", "siglip", "clip-processor", "clip-nested", "clip-flat"])
def test_zeroshot_logits_match_transformers_forward(hf_dirs, digits_test, kind):
    """Each against transformers reading the same folder (the clip-* layouts too: the image processor from
    processor_config.json or preprocessor_config.json, whichever the folder has)."""
    images, _ = digits_test
    lm = load_model(str(hf_dirs[kind]), device="cpu")  # a plain folder path: detected by its config.json
    assert lm.spec.backend == "transformers" and lm.spec.arch == kind.split("-")[0]
    ours = _clip_bench_logits(lm, images)
    ref = _reference_logits(hf_dirs[kind], images, siglip=kind == "siglip")
    assert ours.shape == ref.shape == (len(images), 10)
    # The forward passes agree to the last bit; clip-bench's head computes in float64 and rounds once, so
    # the logits agree to float32 rounding (bound: 1e-5 absolute, for CLIP and SigLIP).
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
    assert (ours.argmax(1) == ref.argmax(1)).all()


def test_clip_padding_trim_is_exact_and_really_cuts(hf_dirs):
    from clip_bench.models.text_encoder import encode_prompts

    lm = load_model(str(hf_dirs["clip"]), device="cpu")
    prompts = [t.format(n) for t in TEMPLATES for n in NAMES]
    trimmed = encode_prompts(lm, prompts, batch_size=7, trim=True)
    full = encode_prompts(lm, prompts, batch_size=7, trim=False)
    assert np.abs(trimmed - full).max() < 1e-6
    seen = []
    hook = lm.model.text_model.encoder.register_forward_pre_hook(
        lambda m, a, k: seen.append(k["inputs_embeds"].shape[1]), with_kwargs=True)
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
    with pytest.raises(ClipBenchError,
                       match=r"does not fill its CLIPModel: 1 missing keys \(visual_projection.weight\)"):
        load_model(str(d), device="cpu")


@pytest.mark.slow
def test_converted_tiny_clip_keeps_its_skill_through_both_backends(tmp_path, eval_config):
    """tiny-clip-digits as a transformers CLIPModel: the same top-1 (91.67) and the same predictions."""
    from clip_bench.protocols.zeroshot import zeroshot

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

    from clip_bench.cli.app import main
    from clip_bench.models.backends import hub

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


def test_checkpoint_saved_with_clip_processor_reads_either_layout(hf_dirs, digits_test):
    """CLIPProcessor.save_pretrained (transformers 5: processor_config.json, no preprocessor_config.json) and
    the hand-written other layout load with the same image-processor config and the same pixels as
    transformers' own image processor reading the folder."""
    import transformers
    from transformers import AutoImageProcessor

    images, _ = digits_test
    if int(transformers.__version__.split(".")[0]) >= 5:
        assert not (hf_dirs["clip-processor"] / "preprocessor_config.json").exists()
    plain = resolve_model(str(hf_dirs["clip"])).preprocess_config["image_processor"]
    for kind in ("clip-processor", "clip-nested", "clip-flat"):
        lm = load_model(str(hf_dirs[kind]), device="cpu")
        pp = {k: v for k, v in lm.spec.preprocess_config["image_processor"].items() if k != "processor_class"}
        assert pp == plain, kind
        ours = torch.stack([lm.preprocess(im) for im in images[:4]])
        theirs = AutoImageProcessor.from_pretrained(hf_dirs[kind], backend="pil")(images=images[:4],
                                                                                  return_tensors="pt")
        assert torch.equal(ours, theirs["pixel_values"]), kind


def test_image_processor_configs_that_disagree_are_an_error(hf_dirs, tmp_path):
    d = _copy(hf_dirs["clip-nested"], tmp_path / "m")
    pp = json.loads((d / "processor_config.json").read_text())["image_processor"]
    (d / "preprocessor_config.json").write_text(json.dumps({**pp, "processor_class": "CLIPProcessor"}))
    assert resolve_model(str(d)).fingerprint  # the same image processor twice: fine
    (d / "preprocessor_config.json").write_text(json.dumps({**pp, "image_mean": [0.5, 0.5, 0.5]}))
    with pytest.raises(ClipBenchError, match="describe different image processors"):
        resolve_model(str(d))


def _swap_tokens(folder: Path, a: str = "3</w>", b: str = "7</w>") -> None:
    """Swap two digit tokens' ids in the tokenizer's vocabulary (tokenizer.json, and vocab.json when saved)."""
    for name in ("tokenizer.json", "vocab.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text())
            vocab = data["model"]["vocab"] if name == "tokenizer.json" else data
            vocab[a], vocab[b] = vocab[b], vocab[a]
            path.write_text(json.dumps(data))


def test_tokenizer_files_key_the_fingerprint_and_the_text_cache(hf_dirs, tmp_path):
    """A tokenizer file that changes the token ids changes the fingerprint (so every result_id) and the
    tokenizer identity (the text cache key); so does every other tokenizer or processor file."""
    d = _copy(hf_dirs["clip"], tmp_path / "m")
    base = resolve_model(str(d))
    before = load_model(base, device="cpu").tokenize(["the digit 3"])
    _swap_tokens(d)
    swapped = resolve_model(str(d))
    assert not torch.equal(load_model(swapped, device="cpu").tokenize(["the digit 3"]), before)
    assert swapped.fingerprint != base.fingerprint and swapped.tokenizer_id != base.tokenizer_id
    for name in ("tokenizer_config.json", "processor_config.json", "tokenizer.model"):
        path = d / name
        previous = resolve_model(str(d))
        data = json.loads(path.read_text()) if path.is_file() else {}
        data["extra_setting"] = 1
        path.write_text(json.dumps(data))
        assert resolve_model(str(d)).fingerprint != previous.fingerprint, name


def test_sweep_reruns_a_checkpoint_whose_tokenizer_was_fixed(hf_dirs, tmp_path, eval_config):
    """A fixed tokenizer.json is another model: the sweep runs it again instead of keeping the old row."""
    from dataclasses import replace

    from clip_bench.protocols.sweep import ModelEntry, run_sweep

    d = _copy(hf_dirs["clip"], tmp_path / "m")
    _swap_tokens(d)
    cfg = replace(eval_config, limit=10)
    first = run_sweep([ModelEntry(str(d))], ["digits"], ["zeroshot"], cfg, device="cpu", echo=lambda m: None)
    again = run_sweep([ModelEntry(str(d))], ["digits"], ["zeroshot"], cfg, device="cpu", echo=lambda m: None)
    assert first["ran"] == 1 and again["done_before"] == 1
    _swap_tokens(d)  # the file fixed
    fixed = run_sweep([ModelEntry(str(d))], ["digits"], ["zeroshot"], cfg, device="cpu", echo=lambda m: None)
    assert fixed == {"done_before": 0, "ran": 1, "failed": 0}


def _truncate_weights(d: Path) -> None:
    path = d / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _impossible_heads(d: Path) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg["text_config"]["num_attention_heads"] = 3  # hidden size 32 is not a multiple of 3
    (d / "config.json").write_text(json.dumps(cfg))


def _misshaped_weight(d: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(d / "model.safetensors"))
    state["visual_projection.weight"] = torch.zeros(8, 32)
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})


DAMAGE = {
    "truncated-weights": (_truncate_weights, "could not load the transformers checkpoint {d} (SafetensorError: "),
    "impossible-heads": (_impossible_heads,
                         "The hidden size (32) is not a multiple of the number of attention heads (3)"),
    "misshaped-weight": (_misshaped_weight, "does not fill its CLIPModel: 1 mismatched keys (visual_projection.weight"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_is_one_line(hf_dirs, tmp_path, capsys, damage):
    """A truncated model.safetensors and an impossible config escaped as tracebacks; a mis-shaped weight
    was an error pointing at a report of transformers' own."""
    from clip_bench.cli.app import main

    d = _copy(hf_dirs["clip"], tmp_path / "m")
    change, expected = DAMAGE[damage]
    change(d)
    code = main(["zeroshot", "--model", str(d), "--task", "digits", "--limit", "4", "--workers", "0", "--quiet",
                 "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert expected.format(d=d) in err and "above report" not in err, err


@pytest.mark.slow
def test_sweep_over_damaged_checkpoints_goes_on_without_transformers_logs(hf_dirs, tmp_path):
    """In a fresh process (transformers imported by the load itself, as on the command line): each damaged
    checkpoint is one FAILED line, no report or warning of transformers' own is printed, and the next
    model still runs."""
    import subprocess
    import sys

    models = []
    for damage, (change, _) in DAMAGE.items():
        d = _copy(hf_dirs["clip"], tmp_path / damage)
        change(d)
        models.append(str(d))
    models.append(str(hf_dirs["clip"]))
    (tmp_path / "models.txt").write_text("\n".join(models) + "\n")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "clip_bench", "sweep", "--models", str(tmp_path / "models.txt"), "--tasks", "digits",
         "--limit", "4", "--workers", "0", "--quiet", "--device", "cpu", "--output-dir", str(tmp_path / "out"),
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, cwd=root, timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(root), "CLIP_BENCH_DEBUG": ""},
    )
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, lines)
    assert [ln.split()[0] for ln in lines] == ["FAILED", "FAILED", "FAILED", "done", "sweep:"], lines
    assert lines[-1].startswith("sweep: 1 ran, 0 already in the results, 3 failed")
