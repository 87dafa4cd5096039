"""The transformers backend: Hugging Face ``CLIPModel`` and ``SiglipModel`` checkpoints.

References: a local folder whose ``config.json`` has ``model_type`` ``clip`` or ``siglip`` (what
``save_pretrained`` writes; ``--model PATH`` detects it), or ``transformers:<repo-id>[@revision]`` on
the hub (pinned to a commit). Everything that shapes the numbers comes from the checkpoint itself:

- preprocessing from its image-processor config, run by transformers' own image processor (the PIL
  backend, the reference implementation; recorded in the fingerprint): ``preprocessor_config.json``,
  or the ``image_processor`` entry of the ``processor_config.json`` that transformers 5's
  ``CLIPProcessor.save_pretrained`` writes (whichever the folder has; both, if they differ, is an error);
- tokenisation by its own tokenizer, padded to the text tower's full length (SigLIP was trained
  that way, and its text tower pools the last position, padding included; no attention mask is
  passed, as in the original SigLIP and open_clip). CLIP's causal tower pools at the end-of-text
  token, so padding after it cannot matter: there, and only there, the padding is trimmed;
- weights from safetensors, or ``.bin`` through ``weights_only``; a checkpoint that leaves weights
  uninitialised or of the wrong shape is an error, never a randomly initialised model.

The fingerprint covers ``config.json``, the weights (content hash, or the hub commit), the
preprocessing and the tokenizer (its files' content hashes and the padding, which are also the
text cache's tokenizer identity): every file that shapes the numbers keys the cached data and the rows.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

import clip_bench.models.backends.hub as hub
from clip_bench.models.backends.base import (
    Backend,
    LoadedModel,
    ModelSpec,
    file_content_hash,
    first_line,
    quiet_third_party_logs,
)
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import sha256_json

PREFIX = "transformers:"
MODEL_TYPES = ("clip", "siglip")
IMAGE_PROCESSOR_BACKEND = "pil"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model",
)
PREPROCESSOR_FILE = "preprocessor_config.json"  # the image processor's own config (every transformers version)
# transformers 5's CLIPProcessor: the image processor's under "image_processor"
PROCESSOR_FILE = "processor_config.json"
SMALL_FILES = ("config.json", PREPROCESSOR_FILE, PROCESSOR_FILE, *TOKENIZER_FILES)
WEIGHT_PATTERNS = ("*.safetensors", "model.safetensors.index.json")
LEGACY_WEIGHT_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClipBenchError(f"{path} is not a readable JSON file ({first_line(exc)}).") from None
    if not isinstance(data, dict):
        raise ClipBenchError(f"{path} must hold a JSON object, not a {type(data).__name__}.")
    return data


def is_transformers_dir(reference: str) -> bool:
    """A local folder with a transformers ``config.json`` (open_clip folders without one are not ours)."""
    path = Path(reference).expanduser()
    return path.is_dir() and (path / "config.json").is_file() and not (
        (path / "open_clip_config.json").is_file() and _model_type(path / "config.json") not in MODEL_TYPES
    )


def _model_type(config_path: Path) -> str | None:
    try:
        return json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def _weight_files(folder: Path) -> list[Path]:
    safe = sorted(folder.glob("*.safetensors"))
    if safe:
        return safe + sorted(folder.glob("model.safetensors.index.json"))
    return sorted(folder.glob("pytorch_model*.bin")) + sorted(folder.glob("pytorch_model.bin.index.json"))


def _check_config(config: dict[str, Any], where: str) -> str:
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ClipBenchError(
            f"{where}: config.json has model_type {model_type!r}; the transformers backend reads "
            f"{' and '.join(MODEL_TYPES)} checkpoints (CLIPModel, SiglipModel)."
        )
    return str(model_type)


def _text_max_length(config: dict[str, Any]) -> int:
    text = config.get("text_config") or {}
    default = 77 if config.get("model_type") == "clip" else 64
    return int(text.get("max_position_embeddings", default))


def _tokenizer_config(config: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    return {
        "backend": "transformers",
        "files": files,
        "padding": "max_length",
        "max_length": _text_max_length(config),
        "attention_mask": False,
    }


def _preprocess_identity(folder: Path, pp: dict[str, Any]) -> dict[str, Any]:
    """The image-processor config that runs, the backend that runs it, and the processor files as they are."""
    files = {name: file_content_hash(folder / name) for name in (PREPROCESSOR_FILE, PROCESSOR_FILE)
             if (folder / name).is_file()}
    return {"image_processor": pp, "processor_backend": IMAGE_PROCESSOR_BACKEND, "files": files}


def image_processor_config(folder: Path, where: str) -> dict[str, Any]:
    """The checkpoint's image-processor config: the ``image_processor`` entry of ``processor_config.json``
    (transformers 5's ``CLIPProcessor.save_pretrained``), else ``preprocessor_config.json`` (every version).

    A folder whose two files describe different image processors is ambiguous (transformers versions
    differ in which one they read): an error, never a guess.
    """
    nested = None
    if (folder / PROCESSOR_FILE).is_file():
        nested = _read_json(folder / PROCESSOR_FILE).get("image_processor")
        if nested is not None and not isinstance(nested, dict):
            raise ClipBenchError(f"{folder / PROCESSOR_FILE}: 'image_processor' must be a JSON object, "
                                 f"not a {type(nested).__name__}.")
    flat = _read_json(folder / PREPROCESSOR_FILE) if (folder / PREPROCESSOR_FILE).is_file() else None
    if nested is None and flat is None:
        raise ClipBenchError(
            f"{where}: no {PREPROCESSOR_FILE} (nor a {PROCESSOR_FILE} with an 'image_processor' entry); clip-bench "
            "takes the preprocessing from the checkpoint's own image-processor config (save it with the processor's "
            "or the image processor's save_pretrained)."
        )
    if nested is not None and flat is not None and _without_processor_class(nested) != _without_processor_class(flat):
        raise ClipBenchError(
            f"{where}: {PREPROCESSOR_FILE} and the 'image_processor' entry of {PROCESSOR_FILE} describe different "
            "image processors, and transformers versions differ in which one they read; keep the one the model was "
            "evaluated with and delete (or fix) the other."
        )
    return nested if nested is not None else flat  # type: ignore[return-value]


def _without_processor_class(pp: dict[str, Any]) -> dict[str, Any]:
    """A processor's name beside an image processor's settings (transformers 4's layout) changes no pixel."""
    return {k: v for k, v in pp.items() if k != "processor_class"}


def _transformers_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return None


def _resolve_local(reference: str, folder: Path, display: str) -> ModelSpec:
    config_path = folder / "config.json"
    config = _read_json(config_path)
    model_type = _check_config(config, str(folder))
    weights = _weight_files(folder)
    if not weights:
        raise ClipBenchError(
            f"{folder}: no weights (model.safetensors, sharded *.safetensors, or pytorch_model.bin) beside config.json."
        )
    pp = image_processor_config(folder, str(folder))
    tok_files = {name: file_content_hash(folder / name) for name in TOKENIZER_FILES if (folder / name).is_file()}
    if not tok_files:
        raise ClipBenchError(f"{folder}: no tokenizer files (tokenizer.json, vocab.json/merges.txt or spiece.model).")
    config_id = {k: v for k, v in config.items() if k != "_name_or_path"}
    return ModelSpec(
        name=display,
        pretrained=None,
        arch=model_type,
        weights=str(folder),
        config_path=str(config_path),
        arch_config=config_id,
        weights_id="sha256:" + sha256_json({p.name: file_content_hash(p) for p in weights}),
        preprocess_config=_preprocess_identity(folder, pp),
        backend="transformers",
        tokenizer_config=_tokenizer_config(config, tok_files),
        backend_version=_transformers_version(),
    )


def _resolve_hub(reference: str, target: str, revision: str | None) -> ModelSpec:
    repo, rev = hub.split_revision(target)
    if rev is not None and revision is not None and rev != revision:
        raise ClipBenchError(f"{reference} names revision {rev!r} but --revision is {revision!r}; give it once.")
    rev = rev or revision
    ref = hub.resolve(repo, rev, PREFIX + repo)
    small = _hub_small_files(ref)  # small files only: no weights yet
    config = _read_json(small / "config.json")
    model_type = _check_config(config, PREFIX + repo)
    pp = image_processor_config(small, f"{PREFIX}{repo} at commit {ref.commit[:12]}")
    config_id = {k: v for k, v in config.items() if k != "_name_or_path"}
    return ModelSpec(
        name=PREFIX + repo + (f"@{rev}" if rev else ""),
        pretrained=None,
        arch=model_type,
        weights=None,
        config_path=None,
        arch_config=config_id,
        weights_id=f"hub:{repo}@{ref.commit}",
        preprocess_config=_preprocess_identity(small, pp),
        revision=ref.commit,
        backend="transformers",
        tokenizer_config=_tokenizer_config(config, {"hub": f"{repo}@{ref.commit}"}),
        backend_version=_transformers_version(),
    )


def _hub_small_files(ref: hub.HubRef) -> Path:
    """The config, processor and tokenizer files of a hub checkpoint at its pinned commit (a snapshot folder).

    A snapshot of that commit that already holds config.json is read as it is (the files of a commit never
    change); otherwise the hub lists the commit's files and the small ones are downloaded.
    """
    from huggingface_hub import snapshot_download

    local = ref.offline or (_snapshot_dir(ref.repo_id, ref.commit) / "config.json").is_file()
    try:
        return Path(snapshot_download(ref.repo_id, revision=ref.commit, local_files_only=local,
                                      allow_patterns=list(SMALL_FILES)))
    except Exception as exc:
        raise ClipBenchError(
            f"could not get the config files of {PREFIX}{ref.repo_id} at commit {ref.commit[:12]} ({first_line(exc)}); "
            "check the network."
        ) from None


def _hub_folder(spec: ModelSpec) -> Path:
    """Download a hub checkpoint at its pinned commit (small files, then safetensors, else .bin weights)."""
    from huggingface_hub import snapshot_download

    repo = spec.name[len(PREFIX):].partition("@")[0]
    commit = str(spec.revision)
    offline = hub.cached_commit(repo, commit) is not None and bool(_weight_files(_snapshot_dir(repo, commit)))
    try:
        folder = Path(snapshot_download(repo, revision=commit, local_files_only=offline,
                                        allow_patterns=[*SMALL_FILES, *WEIGHT_PATTERNS]))
        if not _weight_files(folder):
            folder = Path(snapshot_download(repo, revision=commit, local_files_only=offline,
                                            allow_patterns=[*SMALL_FILES, *LEGACY_WEIGHT_PATTERNS]))
    except Exception as exc:
        raise ClipBenchError(
            f"could not get the files of {spec.name} at commit {commit[:12]} ({first_line(exc)}); check the network."
        ) from None
    return folder


def _snapshot_dir(repo: str, commit: str) -> Path:
    return hub.cache_root() / f"models--{repo.replace('/', '--')}" / "snapshots" / commit


class ImageProcessorTransform:
    """A PIL image -> the pixel tensor the checkpoint's own image processor makes (picklable for workers)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Any) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"ImageProcessorTransform({self.processor!r})"


def _features(out: Any) -> torch.Tensor:
    """transformers 4 returns a tensor from get_*_features; 5 returns an output whose pooler_output is it."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class TransformersModel(LoadedModel):
    """A transformers CLIPModel or SiglipModel behind the backend interface."""

    max_length: int = 77
    model_type: str = "clip"

    def tokenize(self, texts: Any) -> torch.Tensor:
        enc = self.tokenizer(list(texts), padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt")
        return enc["input_ids"]

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        # No attention mask: CLIP's causal tower never looks past end-of-text; SigLIP was trained
        # attending to its padding (pad = eos) and pools the last position.
        return _features(self.model.get_text_features(input_ids=tokens))

    def trim_positions(self, tokens: torch.Tensor) -> torch.Tensor | None:
        if self.model_type != "clip":
            return None  # SigLIP: bidirectional, pools the last (padding) position: nothing can be cut
        eos = self.model.text_model.eos_token_id
        if eos == 2:  # legacy configs: transformers pools at the highest token id (end-of-text)
            return tokens.argmax(dim=-1)
        return (tokens == eos).int().argmax(dim=-1)

    def encode_text_trimmed(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = self.trim_positions(tokens)
        if positions is None:
            return self.encode_text(tokens)
        return self.encode_text(tokens[:, : int(positions.max()) + 1])

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=images))

    def encode_image_pre_proj(self, images: torch.Tensor) -> torch.Tensor:
        if self.model_type != "clip":
            raise ClipBenchError(
                "--features pre-proj: SigLIP has no image projection (its embedding is the attention-pooled "
                "representation itself); use --features embed."
            )
        return self.model.vision_model(pixel_values=images).pooler_output

    def logit_params(self) -> tuple[float, float | None]:
        scale = float(self.model.logit_scale.detach().exp())
        bias = getattr(self.model, "logit_bias", None)
        return scale, (float(bias.detach()) if bias is not None else None)


def _load_kwargs() -> dict[str, Any]:
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    # a mis-shaped weight is reported in the loading info (and refused below) rather than after a report of
    # transformers' own that the quiet logs hide
    return {dtype_key: torch.float32, "weights_only": True, "output_loading_info": True,
            "ignore_mismatched_sizes": True}


def _image_processor(folder: Path, pp: dict[str, Any]) -> Any:
    """transformers' image processor built from `pp`, the config the fingerprint holds (whichever file of
    `folder` it came from, and whichever of them the installed transformers would prefer)."""
    import transformers
    from transformers import AutoImageProcessor

    with tempfile.TemporaryDirectory(prefix="clip_bench_image_processor_") as tmp:
        (Path(tmp) / PREPROCESSOR_FILE).write_text(json.dumps(pp), encoding="utf-8")
        shutil.copyfile(folder / "config.json", Path(tmp) / "config.json")  # names the class when pp does not
        if int(transformers.__version__.split(".")[0]) >= 5:
            return AutoImageProcessor.from_pretrained(tmp, backend=IMAGE_PROCESSOR_BACKEND)
        return AutoImageProcessor.from_pretrained(tmp, use_fast=False)  # transformers 4: the PIL ("slow") one


def _key_text(key: Any) -> str:
    """A missing key, or a mismatched one with its shapes: (name, checkpoint shape, model shape)."""
    if isinstance(key, tuple) and len(key) == 3:
        return f"{key[0]} {list(key[1])} in the checkpoint vs {list(key[2])} in the model"
    return str(key)


def _load_error_detail(exc: BaseException) -> str:
    """An exception's whole message on one line (a validation error names its cause on the next line)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()).rstrip(".")
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class TransformersBackend(Backend):
    """Hugging Face transformers CLIP and SigLIP checkpoints (optional: ``pip install 'clip-bench[transformers]'``)."""

    name = "transformers"
    package = "transformers"

    def claims(self, reference: str) -> bool:
        return reference.startswith(PREFIX) or is_transformers_dir(reference)

    def resolve(self, reference: str, pretrained: str | None, revision: str | None) -> ModelSpec:
        if pretrained is not None:
            raise ClipBenchError(
                f"--pretrained {pretrained} cannot be used with {reference}: a transformers checkpoint brings its own "
                "weights. Drop --pretrained (pass --revision to pick a hub revision)."
            )
        target = reference[len(PREFIX):] if reference.startswith(PREFIX) else reference
        folder = Path(target).expanduser()
        if folder.is_dir():
            if revision is not None:
                raise ClipBenchError(f"--revision applies to hub models, not to the local folder {folder}.")
            return _resolve_local(reference, folder, reference)
        if not reference.startswith(PREFIX):
            raise ClipBenchError(f"{reference} is not a folder with a transformers config.json.")
        if target.startswith((".", "/", "~")) or target.count("/") > 1:
            raise ClipBenchError(f"{reference}: folder {folder} does not exist (and it is not a hub repository id).")
        return _resolve_hub(reference, target, revision)

    def load(self, spec: ModelSpec, device: torch.device, precision: str) -> LoadedModel:
        try:
            import transformers
        except ImportError:
            raise ClipBenchError(
                f"{spec.name} is a transformers checkpoint, but transformers is not installed: "
                "pip install 'clip-bench[transformers]'."
            ) from None
        folder = Path(spec.weights) if spec.weights is not None else _hub_folder(spec)
        cls = transformers.CLIPModel if spec.arch == "clip" else transformers.SiglipModel
        from transformers.utils import logging as tf_logging

        debug = bool(os.environ.get("CLIP_BENCH_DEBUG"))
        bars = tf_logging.is_progress_bar_enabled() and not debug
        if bars:
            tf_logging.disable_progress_bar()  # the "Loading weights" bar of a local checkpoint
        try:
            # transformers sets its own log level when first imported: quiet it only now. A damaged checkpoint
            # (truncated safetensors, an impossible config, a broken tokenizer) raises many kinds of exception;
            # each is this one line, after no report or warning of transformers' own.
            with quiet_third_party_logs(), warnings.catch_warnings():
                if not debug:
                    warnings.simplefilter("ignore")
                model, info = cls.from_pretrained(folder, **_load_kwargs())
                tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
                processor = _image_processor(folder, spec.preprocess_config["image_processor"])
        except Exception as exc:
            raise ClipBenchError(
                f"could not load the transformers checkpoint {spec.name} ({_load_error_detail(exc)}); are its files "
                "complete, and from one save_pretrained?"
            ) from None
        finally:
            if bars:
                tf_logging.enable_progress_bar()
        bad = {k: list(info.get(k) or []) for k in ("missing_keys", "mismatched_keys") if info.get(k)}
        if bad:
            detail = "; ".join(f"{len(v)} {k.replace('_', ' ')} "
                               f"({', '.join(map(_key_text, v[:3]))}{', ...' if len(v) > 3 else ''})"
                               for k, v in bad.items())
            raise ClipBenchError(
                f"checkpoint {spec.name} does not fill its {cls.__name__}: {detail}. Those weights would be random; "
                "is config.json the one saved with these weights?"
            )
        lm = TransformersModel(spec, model.to(device).eval(), ImageProcessorTransform(processor), tokenizer, device,
                               precision)
        lm.max_length = _text_max_length(spec.arch_config)
        lm.model_type = spec.arch
        return lm
