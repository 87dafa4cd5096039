"""The open_clip backend: architectures and tags, OpenAI names, checkpoints, hf-hub:, local-dir:, built-ins.

Everything here predates the backend seam and must keep its numbers and cache keys: fingerprints
and tokenizer ids of open_clip models are pinned by tests.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

import clip_bench.models.backends.hub as hub
from clip_bench.models.backends.base import Backend, LoadedModel, ModelSpec, file_content_hash, first_line
from clip_bench.util.errors import ClipBenchError, UnknownNameError
from clip_bench.util.io import sha256_json
from clip_bench.util.resources import assets_dir

#: OpenAI's published names -> open_clip architectures that reproduce them (QuickGELU activations).
OPENAI_ALIASES: dict[str, str] = {
    "ViT-B/32": "ViT-B-32-quickgelu",
    "ViT-B/16": "ViT-B-16-quickgelu",
    "ViT-L/14": "ViT-L-14-quickgelu",
    "ViT-L/14@336px": "ViT-L-14-336-quickgelu",
    "RN50": "RN50-quickgelu",
    "RN101": "RN101-quickgelu",
    "RN50x4": "RN50x4-quickgelu",
    "RN50x16": "RN50x16-quickgelu",
    "RN50x64": "RN50x64-quickgelu",
}

#: Built-in models shipped with clip-bench: name -> (architecture JSON, checkpoint) inside assets/.
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "tiny-clip-digits": ("tiny_clip/tiny-clip-digits.json", "tiny_clip/tiny-clip-digits.safetensors"),
}

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"


def list_models() -> list[str]:
    """Every name the backend accepts without a path: built-ins, OpenAI aliases, open_clip architectures."""
    import open_clip

    return [*BUILTIN_MODELS, *OPENAI_ALIASES, *open_clip.list_models()]


def tokenizer_config(arch_config: dict[str, Any]) -> dict[str, Any]:
    """Identity of the model's tokenizer, derived from its config (so no tokenizer needs building).

    open_clip picks the tokenizer from the text config: an HF tokenizer name, or its own BPE
    tokenizer, with the context length and any tokenizer kwargs.
    """
    text = dict(arch_config.get("text_cfg", {}) or {})
    return {
        "source": arch_config.get("source"),
        "hf": text.get("hf_tokenizer_name"),
        "context_length": text.get("context_length", 77),
        "kwargs": text.get("tokenizer_kwargs"),
        "vocab_size": text.get("vocab_size"),
    }


def is_open_clip_dir(reference: str) -> bool:
    """A folder in open_clip's local layout (open_clip_config.json beside the weights)."""
    path = Path(reference).expanduser()
    return path.is_dir() and (path / "open_clip_config.json").is_file()


def _resolve(name: str, pretrained: str | None) -> tuple[str, str | None, Path | None]:
    """Return (open_clip model name, pretrained tag or file, custom config JSON or None)."""
    if name in BUILTIN_MODELS:
        cfg, ckpt = BUILTIN_MODELS[name]
        return Path(cfg).stem, pretrained or str(assets_dir() / ckpt), assets_dir() / cfg
    if name in OPENAI_ALIASES:
        return OPENAI_ALIASES[name], pretrained or "openai", None
    if is_open_clip_dir(name):
        name = LOCAL_DIR_PREFIX + name
    if name.startswith((HUB_PREFIX, LOCAL_DIR_PREFIX)):
        if pretrained is not None:
            raise ClipBenchError(
                f"--pretrained {pretrained} cannot be used with {name}: a {name.split(':')[0]}: model brings its own "
                "weights. Drop --pretrained (pass --revision to pick a hub revision)."
            )
        return name, None, None
    if name.endswith(".json"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ClipBenchError(f"model config {path} does not exist; pass an open_clip architecture JSON file.")
        return path.stem, pretrained, path
    import open_clip

    if name not in open_clip.list_models():
        raise UnknownNameError(
            "model", name, list_models(), hint="Run `clip-bench models` to list them, or pass a config .json path."
        )
    return name, pretrained, None


def _weights_id(resolved: str, pretrained: str | None) -> str:
    if pretrained is None:
        return "random-init"
    if Path(pretrained).suffix in CHECKPOINT_SUFFIXES or os.sep in pretrained:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise ClipBenchError(
                f"checkpoint file {path} does not exist; --pretrained takes an open_clip tag "
                f"or a local {'/'.join(CHECKPOINT_SUFFIXES)} file."
            )
        return "sha256:" + file_content_hash(path)
    return "tag:" + pretrained


PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")
INTERPOLATIONS = ("bicubic", "bilinear")
RESIZE_MODES = ("shortest", "longest", "squash")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_preprocess_cfg(pp: Any, where: str) -> None:
    """Validate a model file's ``preprocess_cfg`` now, so a mistake is blamed on the file, not on an image."""
    if not isinstance(pp, dict):
        raise ClipBenchError(f"{where}: preprocess_cfg must be a mapping with keys {', '.join(PREPROCESS_KEYS)}.")
    for key, value in pp.items():
        if key not in PREPROCESS_KEYS:
            raise ClipBenchError(
                f"{where}: unknown preprocess_cfg key {key!r}; allowed keys are {', '.join(PREPROCESS_KEYS)} "
                "(the image size comes from vision_cfg.image_size)."
            )
        if key in ("mean", "std"):
            ok = _is_number(value) or (isinstance(value, list) and len(value) == 3 and all(map(_is_number, value)))
            if ok and key == "std":
                ok = all(v > 0 for v in (value if isinstance(value, list) else [value]))
            if not ok:
                raise ClipBenchError(
                    f"{where}: preprocess_cfg.{key} must be 3 finite numbers (one per RGB "
                    f"channel{', all > 0' if key == 'std' else ''}), not {value!r}."
                )
        elif key == "interpolation" and value not in INTERPOLATIONS:
            raise ClipBenchError(f"{where}: preprocess_cfg.interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                                 f"not {value!r}.")
        elif key == "resize_mode" and value not in RESIZE_MODES:
            raise ClipBenchError(f"{where}: preprocess_cfg.resize_mode must be one of {', '.join(RESIZE_MODES)}, not "
                                 f"{value!r}.")


def _load_config(config_path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClipBenchError(f"model config {config_path} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict) or not {"vision_cfg", "text_cfg", "embed_dim"} <= set(cfg):
        raise ClipBenchError(
            f"model config {config_path} is not an open_clip architecture (needs embed_dim, vision_cfg, text_cfg)."
        )
    if "preprocess_cfg" in cfg:
        check_preprocess_cfg(cfg["preprocess_cfg"], f"model config {config_path}")
    return cfg


def _preprocess_config(arch: str, weights: str | None, cfg: dict[str, Any]) -> dict[str, Any]:
    """open_clip's preprocessing for (arch, weights), derived from configs: size, mean/std, interpolation."""
    pp: dict[str, Any] = {"image_size": cfg.get("vision_cfg", {}).get("image_size")}
    pp.update(cfg.get("preprocess_cfg", {}) or {})
    if weights and not Path(weights).suffix:
        from open_clip import pretrained as oc_pretrained

        tag_cfg = oc_pretrained.get_pretrained_cfg(arch, weights)
        pp.update({k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg})
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in pp.items()}


def _local_dir_spec(name: str) -> tuple[dict[str, Any], str]:
    """(config, weights identity) of an open_clip ``local-dir:`` folder: its config and checkpoint content."""
    folder = Path(name[len(LOCAL_DIR_PREFIX):]).expanduser()
    cfg_path = folder / "open_clip_config.json"
    if not cfg_path.is_file():
        raise ClipBenchError(f"{name}: {cfg_path} does not exist; a local-dir: folder holds open_clip_config.json "
                             "and the weights.")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClipBenchError(f"model config {cfg_path} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_cfg"), dict):
        raise ClipBenchError(f"model config {cfg_path} has no model_cfg mapping (open_clip's local-dir layout).")
    if "preprocess_cfg" in cfg:
        pp = cfg["preprocess_cfg"]
        if not isinstance(pp, dict):
            raise ClipBenchError(f"model config {cfg_path}: preprocess_cfg must be a mapping.")
    weights = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if not weights:
        raise ClipBenchError(f"{name}: no weights file (.safetensors/.bin/.pt/.pth) next to {cfg_path}.")
    return cfg, "local-dir:" + sha256_json({p.name: file_content_hash(p) for p in weights})


def _register_config(spec: ModelSpec) -> dict[str, Any] | None:
    """Make a custom architecture JSON known to open_clip; returns its ``preprocess_cfg`` override.

    open_clip's architecture files carry no preprocessing, so clip-bench lets a custom JSON add a
    ``preprocess_cfg`` key (mean, std, interpolation, resize_mode); it is passed to open_clip as a
    preprocessing override and registered without that key.
    """
    from open_clip import factory

    if spec.config_path is None:
        return None
    cfg = copy.deepcopy(dict(spec.arch_config))
    pp = cfg.pop("preprocess_cfg", None)
    # Registered in memory, no file written: open_clip looks architectures up by name in this dict
    # (get_model_config, create_model, get_tokenizer), and its rescans only add the files they read.
    factory._MODEL_CONFIGS[spec.arch] = cfg
    return pp


def _hub_snapshot(spec: ModelSpec) -> str:
    """Fetch an ``hf-hub:`` model's config and weights at its pinned commit; returns open_clip's ``local-dir:`` name."""
    from open_clip.pretrained import download_pretrained_from_hf

    repo = spec.arch[len(HUB_PREFIX):]
    ref = hub.HubRef(repo, "", str(spec.revision), offline=bool(hub.cached_commit(repo, str(spec.revision))))
    cfg = hub.download(ref, "open_clip_config.json")
    try:
        download_pretrained_from_hf(repo, revision=ref.commit)
    except Exception as exc:
        raise ClipBenchError(f"could not get the weights of {spec.arch} at commit {ref.commit[:12]} ({exc}).") from None
    return LOCAL_DIR_PREFIX + str(cfg.parent)


def _checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of a local checkpoint, read without unpickling code; damaged files are errors.

    Checked before open_clip sees the file, so a random-bytes file, an empty or non-mapping checkpoint
    is one clear sentence (open_clip would fail with StopIteration, AttributeError and the like).
    """
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as exc:
            raise ClipBenchError(
                f"checkpoint {path} is not a readable .safetensors file ({first_line(exc)}); "
                "it may be truncated or not a safetensors file at all. Re-download or re-export it."
            ) from None
        if not shapes:
            raise ClipBenchError(f"checkpoint {path} holds no tensors; it is not a model's weights.")
        return shapes
    try:
        try:
            with warnings.catch_warnings():  # damaged bytes read as an odd pickle protocol: the error below says it
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # a real pickled object (class, function), refused by weights_only
            raise ClipBenchError(
                f"refused to load checkpoint {path}: it holds pickled Python objects beyond tensors, and "
                "clip-bench loads weights only with weights_only=True. Convert it to a plain state_dict or "
                ".safetensors."
            ) from None
        raise ClipBenchError(
            f"checkpoint {path} is not a PyTorch checkpoint (it does not unpickle as tensors); it may be damaged "
            "or another kind of file. Re-download or re-export it."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            UnicodeDecodeError, OverflowError, MemoryError) as exc:
        # random or damaged bytes can read as pickle opcodes that fail anywhere in the unpickler
        raise ClipBenchError(
            f"checkpoint {path} is not a PyTorch checkpoint ({type(exc).__name__}: {first_line(exc)}); "
            "it may be damaged or another kind of file. Re-download or re-export it."
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ClipBenchError(
            f"checkpoint {path} holds a {type(obj).__name__}, not a state dict "
            "(a mapping of parameter names to tensors)."
        )
    if not obj:
        raise ClipBenchError(f"checkpoint {path} is an empty mapping: it holds no weights.")
    bad = next((k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise ClipBenchError(
            f"checkpoint {path}: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor; a state dict maps names "
            "to tensors."
        )
    return {k.removeprefix("module."): tuple(v.shape) for k, v in obj.items()}


def _mismatch_message(spec: ModelSpec, path: str, got: dict[str, tuple[int, ...]]) -> str | None:
    """Which keys and shapes of the checkpoint do not fit the architecture (None if all fit)."""
    import open_clip

    try:
        with torch.device("meta"):
            ref = open_clip.create_model(spec.arch, pretrained=None)
    except Exception:  # an architecture that cannot be built on the meta device: build it for real
        ref = open_clip.create_model(spec.arch, pretrained=None)
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    shapes = [f"{k} {list(got[k])} vs {list(want[k])}" for k in want if k in got and got[k] != want[k]]
    if not (missing or unexpected or shapes):
        return None

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({few(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} keys with other shapes ({few(shapes)})")
    return (
        f"checkpoint {path} does not fit architecture {spec.arch!r} of model {spec.name!r}: {'; '.join(parts)}. "
        "Is it the checkpoint of another architecture? Pass the matching --model."
    )


def _create(spec: ModelSpec, dev: torch.device, precision: str, pp: dict[str, Any]) -> LoadedModel:
    import open_clip

    local_ckpt = spec.weights_id.startswith("sha256:") and spec.weights is not None
    shapes = _checkpoint_shapes(Path(spec.weights).expanduser()) if local_ckpt else None  # type: ignore[arg-type]
    arch = _hub_snapshot(spec) if spec.arch.startswith(HUB_PREFIX) else spec.arch
    try:
        # Weights stay fp32; fp16/bf16 run under autocast (LoadedModel.autocast), as open_clip's own eval does.
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=spec.weights, device=dev, precision="fp32", weights_only=True,
            image_mean=pp.get("mean"), image_std=pp.get("std"),
            image_interpolation=pp.get("interpolation"), image_resize_mode=pp.get("resize_mode"),
        )
    except pickle.UnpicklingError as exc:
        raise ClipBenchError(
            f"refused to load checkpoint {spec.weights}: it holds pickled Python objects beyond tensors, and "
            "clip-bench loads weights only with weights_only=True. Convert it to a plain state_dict or .safetensors."
        ) from exc
    except (RuntimeError, OSError, ValueError, AssertionError, KeyError, StopIteration, AttributeError,
            TypeError) as exc:
        if shapes is not None and (msg := _mismatch_message(spec, str(spec.weights), shapes)):
            raise ClipBenchError(msg) from None
        if isinstance(exc, (AssertionError, KeyError, StopIteration, AttributeError, TypeError)) and shapes is None:
            raise
        tried = f"architecture {spec.arch!r} with weights {spec.weights!r}" if spec.weights else repr(spec.arch)
        raise ClipBenchError(
            f"could not load {tried} for model {spec.name!r} ({first_line(exc)}). Check the name and tag "
            "(`clip-bench models`), that the checkpoint file exists, or that the hub is reachable."
        ) from exc
    model.eval()
    # A pinned hub model reads its tokenizer config from the same snapshot, unless the tokenizer
    # lives in a hub repository of its own (hf_tokenizer_name), which open_clip fetches by name.
    own_tokenizer = (arch != spec.arch
                     and not open_clip.get_model_config(arch).get("text_cfg", {}).get("hf_tokenizer_name"))
    tokenizer = open_clip.get_tokenizer(arch if own_tokenizer else spec.arch)
    return OpenClipModel(spec, model, preprocess, tokenizer, dev, precision)




def resolve(name: str, pretrained: str | None = None, revision: str | None = None) -> ModelSpec:
    """Resolve an open_clip model reference to a ModelSpec (cheap: reads configs, hashes local files once).

    A hub model (``hf-hub:org/repo``, optionally ``@revision``) is pinned to the commit its revision
    points to: a metadata request, or the local cache when offline.
    """
    if name.startswith(HUB_PREFIX):
        base, rev = hub.split_revision(name)
        if rev is not None and revision is not None and rev != revision:
            raise ClipBenchError(f"{name} names revision {rev!r} but --revision is {revision!r}; give it once.")
        name, revision = base, rev or revision
    elif revision is not None:
        raise ClipBenchError(
            f"--revision applies to hub models (hf-hub:org/repo, transformers:org/repo), not to {name!r}."
        )
    arch, weights, config_path = _resolve(name, pretrained)
    commit = None
    if config_path is not None:
        cfg = _load_config(config_path)
        weights_id = _weights_id(arch, weights)
    elif arch.startswith(HUB_PREFIX):
        ref = hub.resolve(arch[len(HUB_PREFIX):], revision, arch)
        commit = ref.commit
        cfg, weights_id = {"source": arch}, f"{arch}@{commit}"
    elif arch.startswith(LOCAL_DIR_PREFIX):
        cfg, weights_id = _local_dir_spec(arch)
    else:
        import open_clip

        cfg = open_clip.get_model_config(arch) or {}
        weights_id = _weights_id(arch, weights)
    label = pretrained if pretrained is not None else ("builtin" if name in BUILTIN_MODELS else weights)
    display = f"{name}@{revision}" if revision is not None else name
    return ModelSpec(
        name=display,
        pretrained=label,
        arch=arch,
        weights=weights,
        config_path=str(config_path) if config_path else None,
        arch_config=cfg,
        weights_id=weights_id,
        preprocess_config=_preprocess_config(arch, weights, cfg),
        revision=commit,
        backend="open_clip",
        tokenizer_config=tokenizer_config(cfg),
    )


def _pool_index(tokens: torch.Tensor, pool: str, eos_id: int | None) -> torch.Tensor:
    if pool == "eos":
        return (tokens == eos_id).int().argmax(dim=-1)
    return tokens.argmax(dim=-1)


def _trimmable(model: torch.nn.Module) -> bool:
    """Whether the text tower is causal and pools at the end-of-text token, so padding can be cut.

    Padding after the pooled token cannot influence it through a causal mask. Towers that pool
    elsewhere ('last', 'first', CoCa's cls token) or attend bidirectionally are encoded untrimmed.
    """
    import open_clip

    if isinstance(model, open_clip.CLIP):
        pool = getattr(model, "text_pool_type", "argmax")
        return pool in ("argmax", "eos") and getattr(model, "attn_mask", None) is not None
    return False


def encode_tokens_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``CLIP.encode_text`` on tokens cut just after the longest real sequence."""
    from open_clip.transformer import text_global_pool

    pool = getattr(model, "text_pool_type", "argmax")
    eos_id = getattr(model, "text_eos_id", None)
    length = int(_pool_index(tokens, pool, eos_id).max()) + 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, pool, eos_token_id=eos_id)
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return x


class OpenClipModel(LoadedModel):
    """An open_clip model behind the backend interface."""

    def tokenize(self, texts: Any) -> torch.Tensor:
        return self.tokenizer(list(texts))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)

    def trim_positions(self, tokens: torch.Tensor) -> torch.Tensor | None:
        if not _trimmable(self.model):
            return None
        return _pool_index(tokens, getattr(self.model, "text_pool_type", "argmax"),
                           getattr(self.model, "text_eos_id", None))

    def encode_text_trimmed(self, tokens: torch.Tensor) -> torch.Tensor:
        return encode_tokens_trimmed(self.model, tokens)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    def image_encoder(self, compile: bool = False) -> Any:
        if not compile:
            return self.model.encode_image
        if not hasattr(self, "_compiled_image"):
            if self.device.type == "cuda":
                self.model.visual.to(memory_format=torch.channels_last)
            self._compiled_image = torch.compile(self.model.encode_image)
        return self._compiled_image

    def encode_image_pre_proj(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.model.visual
        proj = getattr(visual, "proj", None)
        if proj is None:
            raise ClipBenchError(
                f"--features pre-proj needs a ViT image tower with a projection; {type(visual).__name__} has none. "
                "Use --features embed."
            )
        visual.proj = None
        try:
            return visual(images)
        finally:
            visual.proj = proj

    def logit_params(self) -> tuple[float, float | None]:
        scale = float(self.model.logit_scale.detach().exp())
        bias = getattr(self.model, "logit_bias", None)
        return scale, (float(bias.detach()) if bias is not None else None)


class OpenClipBackend(Backend):
    """open_clip: the fallback backend; it reads every reference no other backend claims."""

    name = "open_clip"
    package = "open_clip_torch"

    def claims(self, reference: str) -> bool:
        return True

    def resolve(self, reference: str, pretrained: str | None, revision: str | None) -> ModelSpec:
        return resolve(reference, pretrained, revision)

    def load(self, spec: ModelSpec, device: torch.device, precision: str) -> LoadedModel:
        pp = _register_config(spec) or {}
        return _create(spec, device, precision, pp)
