"""hf-hub: models are pinned to a commit: in the fingerprint, in the rows, and in what loads.

No network: the hub's answer is mocked, and a fake hub cache holds the tiny CLIP in open_clip's hub layout.
"""

from __future__ import annotations

import json
import shutil

import pytest

from clip_bench.models.backends import hub
from clip_bench.models.resolve import resolve_model
from clip_bench.util.errors import ClipBenchError
from clip_bench.util.resources import assets_dir

REPO = "clip-bench-test/tiny-digits"
C1, C2 = "1" * 40, "2" * 40


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A hub cache with the tiny CLIP at commit C1 (refs/main -> C1); the hub itself answers `answers[rev]`."""
    import huggingface_hub.constants as hc

    root = tmp_path / "hub"
    repo_dir = root / f"models--{REPO.replace('/', '--')}"
    snap = repo_dir / "snapshots" / C1
    snap.mkdir(parents=True)
    arch = json.loads((assets_dir() / "tiny_clip" / "tiny-clip-digits.json").read_text())
    (snap / "open_clip_config.json").write_text(json.dumps({"model_cfg": arch, "preprocess_cfg": {}}))
    shutil.copy(assets_dir() / "tiny_clip" / "tiny-clip-digits.safetensors", snap / "open_clip_model.safetensors")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(C1)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    answers: dict[str, object] = {"main": C1}
    calls: list[tuple[str, str]] = []

    def remote_commit(repo_id: str, revision: str) -> str:
        calls.append((repo_id, revision))
        answer = answers.get(revision, ConnectionError("no route to host"))
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    monkeypatch.setattr(hub, "remote_commit", remote_commit)
    return answers, calls


def test_fingerprint_follows_the_hub_commit(fake_hub):
    answers, calls = fake_hub
    s1 = resolve_model(f"hf-hub:{REPO}")
    assert s1.revision == C1 and s1.weights_id.endswith("@" + C1) and calls == [(REPO, "main")]
    answers["main"] = C2  # the repository was updated under the same name
    s2 = resolve_model(f"hf-hub:{REPO}")
    assert s2.revision == C2 and s2.fingerprint != s1.fingerprint
    assert s1.provenance() == {"backend": "open_clip", "revision": C1}


def test_revision_argument_and_suffix(fake_hub):
    answers, calls = fake_hub
    answers["v1"] = C2
    a = resolve_model(f"hf-hub:{REPO}", revision="v1")
    b = resolve_model(f"hf-hub:{REPO}@v1")
    assert a.revision == b.revision == C2 and a.fingerprint == b.fingerprint and a.name == f"hf-hub:{REPO}@v1"
    with pytest.raises(ClipBenchError, match="give it once"):
        resolve_model(f"hf-hub:{REPO}@v1", revision="v2")
    with pytest.raises(ClipBenchError, match="--revision applies to hub models"):
        resolve_model("tiny-clip-digits", revision="v1")


def test_offline_uses_the_cached_commit_and_says_so(fake_hub, capsys):
    answers, _ = fake_hub
    answers["main"] = ConnectionError("network is unreachable")
    spec = resolve_model(f"hf-hub:{REPO}")
    assert spec.revision == C1
    err = capsys.readouterr().err
    assert "the hub is unreachable" in err and C1[:12] in err


def test_offline_and_not_cached_is_a_clear_error(fake_hub):
    answers, _ = fake_hub
    answers["main"] = ConnectionError("network is unreachable")
    with pytest.raises(ClipBenchError, match=r"cannot pin hf-hub:other/model .*has no copy of it") as err:
        resolve_model("hf-hub:other/model")
    assert "\n" not in str(err.value)


def test_unknown_revision_is_a_clear_error(fake_hub, monkeypatch):
    answers, _ = fake_hub
    _, rev_missing = hub._not_found_errors()
    answers["v9"] = rev_missing.__new__(rev_missing)  # the hub's own exception type, built without a response
    with pytest.raises(ClipBenchError, match="revision 'v9' of hf-hub:clip-bench-test/tiny-digits does not exist"):
        resolve_model(f"hf-hub:{REPO}@v9")


def test_pretrained_is_rejected_where_it_would_be_ignored(fake_hub, tmp_path):
    with pytest.raises(ClipBenchError, match="--pretrained openai cannot be used with hf-hub:"):
        resolve_model(f"hf-hub:{REPO}", "openai")
    with pytest.raises(ClipBenchError, match="cannot be used with local-dir:"):
        resolve_model(f"local-dir:{tmp_path}", "laion2b_s34b_b79k")


@pytest.mark.slow
def test_pinned_hub_model_evaluates_and_rows_record_the_commit(fake_hub, eval_config):
    """The files are read at the pinned commit (here from the cache), and the rows say which commit."""
    from clip_bench.protocols.zeroshot import zeroshot

    rows = zeroshot(f"hf-hub:{REPO}", "digits", eval_config)
    top1 = next(r for r in rows if r["metric"] == "top1")
    assert top1["value"] == pytest.approx(91.67, abs=0.01)
    assert top1["extra"]["revision"] == C1 and top1["model"] == f"hf-hub:{REPO}"


def test_local_dir_fingerprint_follows_the_weights(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    arch = json.loads((assets_dir() / "tiny_clip" / "tiny-clip-digits.json").read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": arch}))
    shutil.copy(assets_dir() / "tiny_clip" / "tiny-clip-digits.safetensors", folder / "open_clip_model.safetensors")
    before = resolve_model(f"local-dir:{folder}").fingerprint
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "open_clip_model.safetensors"))
    state["logit_scale"] = state["logit_scale"] + 1
    save_file(state, str(folder / "open_clip_model.safetensors"))
    assert resolve_model(f"local-dir:{folder}").fingerprint != before
