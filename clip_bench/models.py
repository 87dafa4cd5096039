"""Model backend: resolve a user's model name to an open_clip model, with a fingerprint for caches."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from .errors import ClipBenchError, UnknownNameError
from .io_utils import sha256_file, sha256_json, write_text_atomic
from .resources import assets_dir

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
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class ModelSpec:
    """What determines a model's outputs, resolved without loading any weights.

    ``fingerprint`` hashes the architecture config, the weights identity (tag, or content hash of a
    local file) and the preprocessing, so every cache keyed by it misses when any of them changes,
    and a cache hit never needs the model itself.
    """

    name: str
    pretrained: str | None
    arch: str
    weights: str | None
    config_path: str | None
    arch_config: dict[str, Any]
    weights_id: str
    preprocess_config: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return sha256_json(
            {"arch": self.arch_config, "weights": self.weights_id, "preprocess": self.preprocess_config}
        )[:20]


@dataclass
class LoadedModel:
    """An open_clip model ready for inference, with the spec that fingerprints it."""

    spec: ModelSpec
    model: torch.nn.Module
    preprocess: Any
    tokenizer: Any
    device: torch.device
    precision: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pretrained(self) -> str | None:
        return self.spec.pretrained

    @property
    def fingerprint(self) -> str:
        return self.spec.fingerprint

    @property
    def tokenizer_id(self) -> str:
        """Identity of the tokenizer, part of the text-cache key."""
        return tokenizer_id(self.spec)

    def get(self) -> LoadedModel:
        return self

    def image_encoder(self, compile: bool = False) -> Any:
        """``model.encode_image``, optionally through torch.compile (compiled once per model)."""
        if not compile:
            return self.model.encode_image
        if not hasattr(self, "_compiled_image"):
            if self.device.type == "cuda":
                self.model.visual.to(memory_format=torch.channels_last)
            self._compiled_image = torch.compile(self.model.encode_image)
        return self._compiled_image

    def autocast(self) -> Any:
        """Context manager for inference at the requested precision (weights stay fp32; autocast casts)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def tokenizer_id(spec: ModelSpec) -> str:
    """Identity of the model's tokenizer, derived from its config (so no tokenizer needs building).

    open_clip picks the tokenizer from the text config: an HF tokenizer name, or its own BPE
    tokenizer, with the context length and any tokenizer kwargs.
    """
    text = dict(spec.arch_config.get("text_cfg", {}) or {})
    ident = {
        "source": spec.arch_config.get("source"),
        "hf": text.get("hf_tokenizer_name"),
        "context_length": text.get("context_length", 77),
        "kwargs": text.get("tokenizer_kwargs"),
        "vocab_size": text.get("vocab_size"),
    }
    return sha256_json(ident)[:16]


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def list_models() -> list[str]:
    """Every name `load_model` accepts without a path: built-ins, OpenAI aliases, open_clip architectures."""
    import open_clip

    return [*BUILTIN_MODELS, *OPENAI_ALIASES, *open_clip.list_models()]


def list_pretrained() -> list[tuple[str, str]]:
    """(architecture, tag) pairs that open_clip knows how to fetch."""
    import open_clip

    return list(open_clip.list_pretrained())


@lru_cache(maxsize=64)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_content_hash(path: str | os.PathLike[str]) -> str:
    """Content hash of a local weights file, memoised on (path, size, mtime)."""
    st = os.stat(path)
    return _file_hash(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def _resolve(name: str, pretrained: str | None) -> tuple[str, str | None, Path | None]:
    """Return (open_clip model name, pretrained tag or file, custom config JSON or None)."""
    if name in BUILTIN_MODELS:
        cfg, ckpt = BUILTIN_MODELS[name]
        return Path(cfg).stem, pretrained or str(assets_dir() / ckpt), assets_dir() / cfg
    if name in OPENAI_ALIASES:
        return OPENAI_ALIASES[name], pretrained or "openai", None
    if name.startswith("hf-hub:") or name.startswith("local-dir:"):
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
    if resolved.startswith(("hf-hub:", "local-dir:")):
        return resolved
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


def _load_config(config_path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ClipBenchError(f"model config {config_path} is not valid JSON: {exc}") from None
    if not {"vision_cfg", "text_cfg", "embed_dim"} <= set(cfg):
        raise ClipBenchError(
            f"model config {config_path} is not an open_clip architecture (needs embed_dim, vision_cfg, text_cfg)."
        )
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


def resolve_model(name: str, pretrained: str | None = None) -> ModelSpec:
    """Resolve a model name and weights to a ModelSpec (cheap: reads configs, hashes local files once)."""
    arch, weights, config_path = _resolve(name, pretrained)
    if config_path is not None:
        cfg = _load_config(config_path)
    elif arch.startswith(("hf-hub:", "local-dir:")):
        cfg = {"source": arch}
    else:
        import open_clip

        cfg = open_clip.get_model_config(arch) or {}
    label = pretrained if pretrained is not None else ("builtin" if name in BUILTIN_MODELS else weights)
    return ModelSpec(
        name=name,
        pretrained=label,
        arch=arch,
        weights=weights,
        config_path=str(config_path) if config_path else None,
        arch_config=cfg,
        weights_id=_weights_id(arch, weights),
        preprocess_config=_preprocess_config(arch, weights, cfg),
    )


def _register_config(spec: ModelSpec) -> dict[str, Any] | None:
    """Make a custom architecture JSON known to open_clip; returns its ``preprocess_cfg`` override.

    open_clip's architecture files carry no preprocessing, so clip-bench lets a custom JSON add a
    ``preprocess_cfg`` key (mean, std, interpolation, resize_mode); it is passed to open_clip as a
    preprocessing override and registered without that key.
    """
    import open_clip

    if spec.config_path is None:
        return None
    cfg = dict(spec.arch_config)
    pp = cfg.pop("preprocess_cfg", None)
    # Written atomically: several processes (torchrun ranks, parallel runs) register the same config,
    # and open_clip re-reads every registered JSON on each registration.
    path = Path(tempfile.gettempdir()) / "clip_bench_configs" / spec.fingerprint / f"{spec.arch}.json"
    text = json.dumps(cfg)
    if not path.exists() or path.read_text() != text:
        write_text_atomic(path, text)
    open_clip.add_model_config(path)
    return pp


@contextlib.contextmanager
def _quiet_third_party_logs() -> Any:
    """open_clip and huggingface_hub log retries and fallbacks at WARNING/ERROR; our own error says it
    once, clearly. Set CLIP_BENCH_DEBUG=1 to see their logs."""
    if os.environ.get("CLIP_BENCH_DEBUG"):
        yield
        return
    loggers = [logging.getLogger(), logging.getLogger("huggingface_hub")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def load_model(
    name: str | ModelSpec,
    pretrained: str | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
) -> LoadedModel:
    """Load a CLIP-style model by name, ready for inference.

    `name` is an open_clip architecture (with `pretrained` tag or checkpoint file), an OpenAI name
    such as ``ViT-B/32`` (weights default to ``openai``), ``hf-hub:org/repo``, a path to an open_clip
    architecture JSON, or the built-in ``tiny-clip-digits``.
    """

    if precision not in PRECISIONS:
        raise ClipBenchError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ClipBenchError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu.")
    spec = name if isinstance(name, ModelSpec) else resolve_model(name, pretrained)
    pp = _register_config(spec) or {}
    with _quiet_third_party_logs():
        return _create(spec, dev, precision, pp)


def _create(spec: ModelSpec, dev: torch.device, precision: str, pp: dict[str, Any]) -> LoadedModel:
    import open_clip

    try:
        # Weights stay fp32; fp16/bf16 run under autocast (LoadedModel.autocast), as open_clip's own eval does.
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.arch, pretrained=spec.weights, device=dev, precision="fp32", weights_only=True,
            image_mean=pp.get("mean"), image_std=pp.get("std"),
            image_interpolation=pp.get("interpolation"), image_resize_mode=pp.get("resize_mode"),
        )
    except pickle.UnpicklingError as exc:
        raise ClipBenchError(
            f"refused to load checkpoint {spec.weights}: it holds pickled Python objects beyond tensors, and "
            "clip-bench loads weights only with weights_only=True. Convert it to a plain state_dict or .safetensors."
        ) from exc
    except (RuntimeError, OSError, ValueError) as exc:
        tried = f"architecture {spec.arch!r} with weights {spec.weights!r}" if spec.weights else repr(spec.arch)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ClipBenchError(
            f"could not load {tried} for model {spec.name!r} ({first}). Check the name and tag "
            "(`clip-bench models`), that the checkpoint file exists, or that the hub is reachable."
        ) from exc
    model.eval()
    return LoadedModel(spec, model, preprocess, open_clip.get_tokenizer(spec.arch), dev, precision)


class ModelHandle:
    """A model that is loaded only when something must run through it.

    Cache lookups need only the fingerprint and the tokenizer, so a fully cached evaluation never
    loads weights.
    """

    def __init__(self, spec: ModelSpec, device: str | torch.device | None = None, precision: str = "fp32") -> None:
        self.spec = spec
        self.device = torch.device(device) if device is not None else default_device()
        self.precision = precision
        self._loaded: LoadedModel | None = None

    @classmethod
    def of(cls, model: str | ModelSpec | LoadedModel | ModelHandle, pretrained: str | None = None,
           device: str | torch.device | None = None, precision: str = "fp32") -> ModelHandle:
        """Wrap whatever the caller passed (a name, a spec, a loaded model, or a handle)."""
        if isinstance(model, ModelHandle):
            return model
        if isinstance(model, LoadedModel):
            handle = cls(model.spec, model.device, model.precision)
            handle._loaded = model
            return handle
        spec = model if isinstance(model, ModelSpec) else resolve_model(model, pretrained)
        return cls(spec, device, precision)

    @property
    def fingerprint(self) -> str:
        return self.spec.fingerprint

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    @property
    def tokenizer_id(self) -> str:
        return tokenizer_id(self.spec)

    def get(self) -> LoadedModel:
        """The loaded model (loads it on first use)."""
        if self._loaded is None:
            self._loaded = load_model(self.spec, device=self.device, precision=self.precision)
        return self._loaded
