"""Tiny transformers CLIP/SigLIP checkpoints written offline, in the exact on-disk format of save_pretrained.

- CLIP's tokenizer is built from open_clip's bundled BPE vocabulary (the same 49,408 tokens OpenAI's
  CLIP uses), with the start/end tokens renamed to transformers' ``<|startoftext|>``/``<|endoftext|>``.
- SigLIP's tokenizer is a SentencePiece model trained on the fly on a few prompts (the real ones are
  SentencePiece models too, just larger), wrapped in transformers' ``SiglipTokenizer``.
- The tiny open_clip CLIP shipped with clip-bench converts to a ``CLIPModel`` by a weight mapping.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
BICUBIC = 3  # PIL.Image.BICUBIC, as preprocessor_config.json stores it


def save_clip_tokenizer(folder: Path) -> None:
    """vocab.json + merges.txt from open_clip's BPE file, loaded and saved by transformers' CLIPTokenizer."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    bpe = SimpleTokenizer()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(tok, tok): idx for tok, idx in bpe.encoder.items()}
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    raw = folder.parent / f"{folder.name}-bpe-files"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (raw / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    CLIPTokenizer.from_pretrained(str(raw)).save_pretrained(str(folder))


def save_siglip_tokenizer(folder: Path, corpus: list[str], vocab_size: int = 80) -> int:
    """A SentencePiece unigram model trained on `corpus` (pad 0, eos 1, unk 2, as SigLIP's), saved as
    SiglipTokenizer."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=buf, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        hard_vocab_limit=False, minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(buf.getvalue())
    tok = SiglipTokenizer(vocab_file=str(folder / "spiece.model"))
    tok.save_pretrained(str(folder))
    return len(tok)


def write_tiny_clip(folder: Path, seed: int = 0, image_size: int = 32, with_processor: bool = False) -> Path:
    """A random tiny CLIPModel + tokenizer + CLIPImageProcessor config, via save_pretrained.

    With `with_processor`, the tokenizer and image processor are saved together by
    ``CLIPProcessor.save_pretrained``, as users do: the layout of the installed transformers (version 5:
    the image processor's config nested in ``processor_config.json``; version 4: ``preprocessor_config.json``).
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=49407),
        vision_config=dict(image_size=image_size, patch_size=8, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2),
        projection_dim=16,
    )
    CLIPModel(cfg).eval().save_pretrained(str(folder))
    save_clip_tokenizer(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size},
                                         resample=BICUBIC, image_mean=OPENAI_MEAN, image_std=OPENAI_STD)
    if with_processor:
        CLIPProcessor(image_processor=image_processor, tokenizer=CLIPTokenizer.from_pretrained(str(folder))
                      ).save_pretrained(str(folder))
    else:
        image_processor.save_pretrained(str(folder))
    return folder


def image_processor_dict(folder: Path) -> dict:
    """The image-processor config of a checkpoint folder, from whichever layout it has."""
    processor = folder / "processor_config.json"
    if processor.is_file() and "image_processor" in json.loads(processor.read_text()):
        return json.loads(processor.read_text())["image_processor"]
    return json.loads((folder / "preprocessor_config.json").read_text())


def set_layout(folder: Path, layout: str) -> Path:
    """Rewrite a checkpoint's image-processor config by hand in one layout, whatever transformers wrote:
    ``nested`` (transformers 5's ``processor_config.json`` with an ``image_processor`` entry, no
    ``preprocessor_config.json``) or ``flat`` (``preprocessor_config.json`` only, as transformers 4 saves it)."""
    pp = {k: v for k, v in image_processor_dict(folder).items() if k != "processor_class"}
    for name in ("processor_config.json", "preprocessor_config.json"):
        (folder / name).unlink(missing_ok=True)
    if layout == "nested":
        (folder / "processor_config.json").write_text(json.dumps({"image_processor": pp,
                                                                  "processor_class": "CLIPProcessor"},
                                                                 indent=2))
    else:
        (folder / "preprocessor_config.json").write_text(json.dumps({**pp, "processor_class": "CLIPProcessor"},
                                                                    indent=2))
    return folder


def write_tiny_siglip(folder: Path, corpus: list[str], seed: int = 0) -> Path:
    """A random tiny SiglipModel + SentencePiece tokenizer + SiglipImageProcessor config."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    vocab = save_siglip_tokenizer(folder, corpus)
    torch.manual_seed(seed)
    cfg = SiglipConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, pad_token_id=1, eos_token_id=1,
                         bos_token_id=None),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2),
    )
    model = SiglipModel(cfg).eval()
    with torch.no_grad():  # make the learned scale and bias visible (init leaves the bias at -10 and scale log 10)
        model.logit_scale.fill_(2.0)
        model.logit_bias.fill_(-3.5)
    model.save_pretrained(str(folder))
    SiglipImageProcessor(size={"height": 32, "width": 32}, resample=BICUBIC, image_mean=[0.5, 0.5, 0.5],
                         image_std=[0.5, 0.5, 0.5]).save_pretrained(str(folder))
    return folder


def convert_tiny_open_clip(folder: Path) -> Path:
    """clip-bench's tiny open_clip CLIP as a transformers CLIPModel folder (weights mapped one by one).

    Checked against the architecture: GELU (``quick_gelu`` false) is transformers' exact ``gelu``;
    LayerNorm eps 1e-5 on both sides; fused attention in_proj splits into q/k/v; the projections
    are stored (in, out) in open_clip and (out, in) in nn.Linear, so they are transposed; positional
    embeddings and the class token copy as they are; the logit scale is the same log-temperature.
    """
    from safetensors.torch import load_file
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from clip_bench.models.tiny_clip import CONFIG
    from clip_bench.util.resources import assets_dir

    oc = {k: v.float() for k, v in load_file(str(assets_dir() / "tiny_clip" / "tiny-clip-digits.safetensors")).items()}
    assert CONFIG["quick_gelu"] is False  # QuickGELU would need hidden_act="quick_gelu"
    v, t = CONFIG["vision_cfg"], CONFIG["text_cfg"]
    cfg = CLIPConfig(
        text_config=dict(vocab_size=t["vocab_size"], hidden_size=t["width"], intermediate_size=4 * t["width"],
                         num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                         max_position_embeddings=t["context_length"], hidden_act="gelu", layer_norm_eps=1e-5,
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(image_size=v["image_size"], patch_size=v["patch_size"], hidden_size=v["width"],
                           intermediate_size=4 * v["width"], num_hidden_layers=v["layers"],
                           num_attention_heads=v["width"] // v["head_width"], hidden_act="gelu", layer_norm_eps=1e-5),
        projection_dim=CONFIG["embed_dim"],
    )
    hf: dict[str, torch.Tensor] = {}

    def blocks(src: str, dst: str, layers: int) -> None:
        for i in range(layers):
            s, d = f"{src}.resblocks.{i}", f"{dst}.layers.{i}"
            q, k, vv = oc[f"{s}.attn.in_proj_weight"].chunk(3)
            qb, kb, vb = oc[f"{s}.attn.in_proj_bias"].chunk(3)
            hf.update({
                f"{d}.self_attn.q_proj.weight": q, f"{d}.self_attn.q_proj.bias": qb,
                f"{d}.self_attn.k_proj.weight": k, f"{d}.self_attn.k_proj.bias": kb,
                f"{d}.self_attn.v_proj.weight": vv, f"{d}.self_attn.v_proj.bias": vb,
                f"{d}.self_attn.out_proj.weight": oc[f"{s}.attn.out_proj.weight"],
                f"{d}.self_attn.out_proj.bias": oc[f"{s}.attn.out_proj.bias"],
                f"{d}.layer_norm1.weight": oc[f"{s}.ln_1.weight"], f"{d}.layer_norm1.bias": oc[f"{s}.ln_1.bias"],
                f"{d}.layer_norm2.weight": oc[f"{s}.ln_2.weight"], f"{d}.layer_norm2.bias": oc[f"{s}.ln_2.bias"],
                f"{d}.mlp.fc1.weight": oc[f"{s}.mlp.c_fc.weight"], f"{d}.mlp.fc1.bias": oc[f"{s}.mlp.c_fc.bias"],
                f"{d}.mlp.fc2.weight": oc[f"{s}.mlp.c_proj.weight"], f"{d}.mlp.fc2.bias": oc[f"{s}.mlp.c_proj.bias"],
            })

    blocks("transformer", "text_model.encoder", t["layers"])
    blocks("visual.transformer", "vision_model.encoder", v["layers"])
    hf.update({
        "text_model.embeddings.token_embedding.weight": oc["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": oc["positional_embedding"],
        "text_model.final_layer_norm.weight": oc["ln_final.weight"],
        "text_model.final_layer_norm.bias": oc["ln_final.bias"],
        "text_projection.weight": oc["text_projection"].T.contiguous(),
        "vision_model.embeddings.class_embedding": oc["visual.class_embedding"],
        "vision_model.embeddings.patch_embedding.weight": oc["visual.conv1.weight"],
        "vision_model.embeddings.position_embedding.weight": oc["visual.positional_embedding"],
        "vision_model.pre_layrnorm.weight": oc["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": oc["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": oc["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": oc["visual.ln_post.bias"],
        "visual_projection.weight": oc["visual.proj"].T.contiguous(),
        "logit_scale": oc["logit_scale"],
    })
    model = CLIPModel(cfg).eval()
    missing, unexpected = model.load_state_dict(hf, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    assert not missing and not unexpected, (missing, unexpected)
    model.save_pretrained(str(folder))
    save_clip_tokenizer(folder)
    CLIPImageProcessor(size={"shortest_edge": v["image_size"]},
                       crop_size={"height": v["image_size"], "width": v["image_size"]},
                       resample=BICUBIC, image_mean=OPENAI_MEAN, image_std=OPENAI_STD).save_pretrained(str(folder))
    return folder
