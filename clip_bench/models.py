"""Model backend: resolve a user's model name to an open_clip model, with a fingerprint for caches."""

from __future__ import annotations

import contextlib
import json
import logging
import math
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
    revision: str | None = None  # the commit a hub model was pinned to (part of weights_id too)

    @property
    def fingerprint(self) -> str:
        return sha256_json(
            {"arch": self.arch_config, "weights": self.weights_id, "preprocess": self.preprocess_config}
        )[:20]

    def provenance(self) -> dict[str, Any]:
        """Row fields that identify the weights beyond name and tag (the hub commit, if any)."""
        return {"revision": self.revision}


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


DEVICE_TYPES = ("cpu", "cuda", "mps")


def parse_device(device: str | torch.device | None) -> torch.device:
    """A usable torch device from the user's ``--device`` (default: CUDA when available, else the CPU)."""
    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ClipBenchError(f"unknown device {device!r}; use cpu, cuda or cuda:N.") from None
    if dev.type not in DEVICE_TYPES:
        raise ClipBenchError(f"device {device!r} is not supported; use cpu, cuda or cuda:N.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ClipBenchError(f"--device {device} was asked for, but torch sees no CUDA device; use --device cpu.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ClipBenchError(
                f"--device {device}: torch sees only {torch.cuda.device_count()} CUDA device(s) (cuda:0 ... "
                f"cuda:{torch.cuda.device_count() - 1})."
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ClipBenchError(f"--device {device} was asked for, but torch has no MPS device here; use --device cpu.")
    return dev


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


HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"


def _resolve(name: str, pretrained: str | None) -> tuple[str, str | None, Path | None]:
    """Return (open_clip model name, pretrained tag or file, custom config JSON or None)."""
    if name in BUILTIN_MODELS:
        cfg, ckpt = BUILTIN_MODELS[name]
        return Path(cfg).stem, pretrained or str(assets_dir() / ckpt), assets_dir() / cfg
    if name in OPENAI_ALIASES:
        return OPENAI_ALIASES[name], pretrained or "openai", None
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
                    f"{where}: preprocess_cfg.{key} must be 3 finite numbers (one per RGB channel{', all > 0' if key == 'std' else ''}), "
                    f"not {value!r}."
                )
        elif key == "interpolation" and value not in INTERPOLATIONS:
            raise ClipBenchError(f"{where}: preprocess_cfg.interpolation must be one of {', '.join(INTERPOLATIONS)}, not {value!r}.")
        elif key == "resize_mode" and value not in RESIZE_MODES:
            raise ClipBenchError(f"{where}: preprocess_cfg.resize_mode must be one of {', '.join(RESIZE_MODES)}, not {value!r}.")


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


def split_revision(name: str, revision: str | None) -> tuple[str, str | None]:
    """Take a ``@rev`` suffix off a hub reference; `revision` (``--revision``) may give it instead."""
    from .backends.hub import split_revision as split

    base, rev = split(name)
    if rev is not None and revision is not None and rev != revision:
        raise ClipBenchError(f"{name} names revision {rev!r} but --revision is {revision!r}; give it once.")
    return base, rev or revision


def with_revision(name: str, revision: str | None) -> str:
    """``--revision REV`` as part of a hub model reference (``hf-hub:org/repo@REV``)."""
    if revision is None:
        return name
    if not name.startswith(HUB_PREFIX):
        raise ClipBenchError(f"--revision applies to hub models (hf-hub:org/repo), not to {name!r}.")
    base, rev = split_revision(name, revision)
    return f"{base}@{rev}"


def resolve_model(name: str, pretrained: str | None = None, revision: str | None = None) -> ModelSpec:
    """Resolve a model name and weights to a ModelSpec (cheap: reads configs, hashes local files once).

    A hub model (``hf-hub:org/repo``, optionally ``@revision``) is pinned to the commit its revision
    points to: a metadata request, or the local cache when offline.
    """
    if name.startswith(HUB_PREFIX):
        name, revision = split_revision(name, revision)
    elif revision is not None:
        raise ClipBenchError(f"--revision applies to hub models (hf-hub:org/repo), not to {name!r}.")
    arch, weights, config_path = _resolve(name, pretrained)
    commit = None
    if config_path is not None:
        cfg = _load_config(config_path)
        weights_id = _weights_id(arch, weights)
    elif arch.startswith(HUB_PREFIX):
        from .backends import hub

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
    revision: str | None = None,
) -> LoadedModel:
    """Load a CLIP-style model by name, ready for inference.

    `name` is an open_clip architecture (with `pretrained` tag or checkpoint file), an OpenAI name
    such as ``ViT-B/32`` (weights default to ``openai``), ``hf-hub:org/repo`` (pinned to the commit
    of `revision`, default main), ``local-dir:/folder``, a path to an open_clip architecture JSON,
    or the built-in ``tiny-clip-digits``.
    """

    if precision not in PRECISIONS:
        raise ClipBenchError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    dev = parse_device(device)
    spec = name if isinstance(name, ModelSpec) else resolve_model(name, pretrained, revision)
    pp = _register_config(spec) or {}
    with _quiet_third_party_logs():
        return _create(spec, dev, precision, pp)


def _hub_snapshot(spec: ModelSpec) -> str:
    """Fetch an ``hf-hub:`` model's config and weights at its pinned commit; returns open_clip's ``local-dir:`` name."""
    from open_clip.pretrained import download_pretrained_from_hf

    from .backends import hub

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
                f"checkpoint {path} is not a readable .safetensors file ({str(exc).splitlines()[0]}); "
                "it may be truncated or not a safetensors file at all. Re-download or re-export it."
            ) from None
        if not shapes:
            raise ClipBenchError(f"checkpoint {path} holds no tensors; it is not a model's weights.")
        return shapes
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # a real pickled object (class, function), refused by weights_only
            raise ClipBenchError(
                f"refused to load checkpoint {path}: it holds pickled Python objects beyond tensors, and "
                "clip-bench loads weights only with weights_only=True. Convert it to a plain state_dict or .safetensors."
            ) from None
        raise ClipBenchError(
            f"checkpoint {path} is not a PyTorch checkpoint (it does not unpickle as tensors); it may be damaged "
            "or another kind of file. Re-download or re-export it."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ClipBenchError(f"checkpoint {path} is not a PyTorch checkpoint ({first}); re-download or re-export it.") from None
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ClipBenchError(
            f"checkpoint {path} holds a {type(obj).__name__}, not a state dict (a mapping of parameter names to tensors)."
        )
    if not obj:
        raise ClipBenchError(f"checkpoint {path} is an empty mapping: it holds no weights.")
    bad = next((k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise ClipBenchError(
            f"checkpoint {path}: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor; a state dict maps names to tensors."
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
    except (RuntimeError, OSError, ValueError, AssertionError, KeyError, StopIteration, AttributeError, TypeError) as exc:
        if shapes is not None and (msg := _mismatch_message(spec, str(spec.weights), shapes)):
            raise ClipBenchError(msg) from None
        if isinstance(exc, (AssertionError, KeyError, StopIteration, AttributeError, TypeError)) and shapes is None:
            raise
        tried = f"architecture {spec.arch!r} with weights {spec.weights!r}" if spec.weights else repr(spec.arch)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ClipBenchError(
            f"could not load {tried} for model {spec.name!r} ({first}). Check the name and tag "
            "(`clip-bench models`), that the checkpoint file exists, or that the hub is reachable."
        ) from exc
    model.eval()
    # A pinned hub model reads its tokenizer config from the same snapshot, unless the tokenizer
    # lives in a hub repository of its own (hf_tokenizer_name), which open_clip fetches by name.
    own_tokenizer = arch != spec.arch and not open_clip.get_model_config(arch).get("text_cfg", {}).get("hf_tokenizer_name")
    tokenizer = open_clip.get_tokenizer(arch if own_tokenizer else spec.arch)
    return LoadedModel(spec, model, preprocess, tokenizer, dev, precision)


class ModelHandle:
    """A model that is loaded only when something must run through it.

    Cache lookups need only the fingerprint and the tokenizer, so a fully cached evaluation never
    loads weights.
    """

    def __init__(self, spec: ModelSpec, device: str | torch.device | None = None, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ClipBenchError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
        self.spec = spec
        self.device = parse_device(device)
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
