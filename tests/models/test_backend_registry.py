"""The backend seam: a third backend is one small class, registered lazily, and the whole pipeline uses it."""

from __future__ import annotations

import pytest
import torch
from toy_backend import PREFIX

from clip_bench.models.backends import Backend, LoadedModel, ModelSpec, backend_for, get_backend, register_backend


@pytest.fixture
def pixel_backend():
    """Registered lazily, as a plugin would be: the module is imported only when a reference needs it."""
    from clip_bench.models import backends

    register_backend("pixels", "toy_backend:PixelBackend")
    yield
    backends.unregister_backend("pixels")


def test_builtin_backends_are_found_by_reference(tmp_path):
    assert backend_for("tiny-clip-digits").name == "open_clip"
    assert backend_for("transformers:openai/clip-vit-base-patch32").name == "transformers"
    (tmp_path / "config.json").write_text('{"model_type": "clip"}')
    assert backend_for(str(tmp_path)).name == "transformers"
    with pytest.raises(KeyError, match="unknown model backend 'nope'"):
        get_backend("nope")


def test_a_third_backend_runs_the_whole_pipeline(pixel_backend, eval_config):
    from clip_bench.models.resolve import ModelHandle
    from clip_bench.protocols.zeroshot import zeroshot

    assert backend_for(f"{PREFIX}8").name == "pixels"
    rows = zeroshot(f"{PREFIX}8", "digits", eval_config)
    top1 = next(r for r in rows if r["metric"] == "top1")
    assert top1["extra"]["backend"] == "pixels" and 0 <= top1["value"] <= 100
    # its fingerprint keys the caches: a second run is served from them without loading the model
    handle = ModelHandle.of(f"{PREFIX}8", device="cpu")
    again = zeroshot(handle, "digits", eval_config)
    assert not handle.is_loaded and [r["value"] for r in again] == [r["value"] for r in rows]
    assert ModelHandle.of(f"{PREFIX}9", device="cpu").fingerprint != handle.fingerprint


def test_duplicate_registration_is_refused(pixel_backend):
    with pytest.raises(ValueError, match="already registered"):
        register_backend("pixels", "toy_backend:PixelBackend")


def test_interface_defaults_are_explicit():
    class Half(Backend):
        name = "half"

    lm = LoadedModel(ModelSpec("m", None, "a", None, None, {}, "w", {}), torch.nn.Identity(), lambda x: x, None,
                     torch.device("cpu"), "fp32")
    assert lm.trim_positions(torch.zeros(1, 3)) is None  # trimming is off unless a backend proves it exact
    with pytest.raises(NotImplementedError):
        lm.encode_text(torch.zeros(1, 3))
    with pytest.raises(NotImplementedError):
        Half().claims("x")
