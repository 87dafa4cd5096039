"""Models: resolve a user's model reference through the backend that reads it, and load it lazily.

The backends (open_clip, transformers, and any registered plugin) live in ``clip_bench.models.backends``;
this module is the front door: ``resolve_model`` (a ModelSpec and its fingerprint, no weights),
``load_model`` and ``ModelHandle`` (loads only when something must run through the model).
"""

from __future__ import annotations

import torch

from clip_bench.models.backends import backend_for, get_backend
from clip_bench.models.backends.base import (
    PRECISIONS,
    LoadedModel,
    ModelSpec,
    file_content_hash,
    quiet_third_party_logs,
)
from clip_bench.models.backends.hub import split_revision
from clip_bench.models.backends.open_clip_backend import BUILTIN_MODELS, CHECKPOINT_SUFFIXES, OPENAI_ALIASES
from clip_bench.models.backends.open_clip_backend import list_models as _open_clip_models
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.resources import assets_dir  # noqa: F401  (re-exported: the assets folder was public here before)

__all__ = [
    "BUILTIN_MODELS", "CHECKPOINT_SUFFIXES", "OPENAI_ALIASES", "PRECISIONS", "LoadedModel", "ModelHandle", "ModelSpec",
    "default_device", "file_content_hash", "list_models", "list_pretrained", "load_model", "parse_device",
    "resolve_model", "tokenizer_id", "with_revision",
]

#: Model references that name a hub repository, and so take a revision.
HUB_REFERENCE_PREFIXES = ("hf-hub:", "transformers:")
DEVICE_TYPES = ("cpu", "cuda", "mps")


def tokenizer_id(spec: ModelSpec) -> str:
    """Identity of the model's tokenizer and padding, part of the text-cache key."""
    return spec.tokenizer_id


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    return _open_clip_models()


def list_pretrained() -> list[tuple[str, str]]:
    """(architecture, tag) pairs that open_clip knows how to fetch."""
    import open_clip

    return list(open_clip.list_pretrained())


def with_revision(name: str, revision: str | None) -> str:
    """``--revision REV`` as part of a hub model reference (``hf-hub:org/repo@REV``, ``transformers:org/repo@REV``)."""
    if revision is None:
        return name
    if not name.startswith(HUB_REFERENCE_PREFIXES):
        raise ClipBenchError(
            f"--revision applies to hub models (hf-hub:org/repo, transformers:org/repo), not to {name!r}."
        )
    base, rev = split_revision(name)
    if rev is not None and rev != revision:
        raise ClipBenchError(f"{name} names revision {rev!r} but --revision is {revision!r}; give it once.")
    return f"{base}@{revision}"


def resolve_model(name: str, pretrained: str | None = None, revision: str | None = None) -> ModelSpec:
    """Resolve a model reference to a ModelSpec through the backend that reads it (no weights are loaded).

    References: an open_clip architecture (with a `pretrained` tag or checkpoint file), an OpenAI
    name such as ``ViT-B/32``, ``hf-hub:org/repo[@rev]``, ``local-dir:/folder``, an open_clip
    architecture JSON, ``tiny-clip-digits``; a transformers CLIP/SigLIP folder (detected by its
    ``config.json``) or ``transformers:org/repo[@rev]``. Hub references are pinned to a commit.
    """
    if not isinstance(name, str) or not name:
        raise ClipBenchError(f"a model reference must be a non-empty string, not {name!r}.")
    backend = backend_for(name)
    spec = backend.resolve(name, pretrained, revision)
    return spec


def load_model(
    name: str | ModelSpec,
    pretrained: str | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    revision: str | None = None,
) -> LoadedModel:
    """Load a CLIP-style model by reference (see `resolve_model`), ready for inference.

    Weights stay fp32; ``fp16``/``bf16`` run under autocast, as open_clip's own evaluation does.

    Args:
        name: A model reference (``"tiny-clip-digits"``, an open_clip architecture, ``"ViT-B/32"``,
            ``"hf-hub:org/repo"``, ``"local-dir:/folder"``, ...) or a resolved ModelSpec.
        pretrained: The pretrained tag or checkpoint file of an open_clip architecture.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a torch.device; default: the GPU if there is one.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        revision: A hub commit or tag to pin (hub references).
    """
    if precision not in PRECISIONS:
        raise ClipBenchError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    dev = parse_device(device)
    spec = name if isinstance(name, ModelSpec) else resolve_model(name, pretrained, revision)
    with quiet_third_party_logs():
        return get_backend(spec.backend).load(spec, dev, precision)


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
        return self.spec.tokenizer_id

    def get(self) -> LoadedModel:
        """The loaded model (loads it on first use)."""
        if self._loaded is None:
            self._loaded = load_model(self.spec, device=self.device, precision=self.precision)
        return self._loaded


#: What the Python API accepts as a model: a reference (name, ``hf-hub:`` id, checkpoint path), a resolved spec,
#: a loaded model, or a handle.
ModelRef = str | ModelSpec | LoadedModel | ModelHandle
