"""On-disk cache of text embeddings keyed by (model fingerprint, tokenizer, precision, exact prompt string).

Each write adds one shard: ``<n>.npy`` (float32 rows) then ``<n>.json`` (the prompt of each row,
written last as the commit marker). Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .identity import numeric_identity
from .io_utils import file_lock, save_npy_atomic, write_json_atomic

MAX_SHARDS = 32  # merge shards into one beyond this many


class TextEmbeddingCache:
    """Prompt -> L2-normalised embedding, for one model fingerprint and tokenizer."""

    def __init__(
        self, root: str | Path, model_fingerprint: str, tokenizer_id: str, precision: str = "fp32", device: Any = None,
    ) -> None:
        num = numeric_identity(precision, device)
        tag = num["precision"] + (f"-{num['device_type']}" if num["device_type"] else "")
        self.dir = Path(root) / "text" / f"{model_fingerprint}-{tokenizer_id}-{tag}"
        self._rows: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            self._rows = {}
            if self.dir.is_dir():
                for meta in sorted(self.dir.glob("*.json")):
                    arr_path = meta.with_suffix(".npy")
                    try:
                        prompts = json.loads(meta.read_text(encoding="utf-8"))["prompts"]
                        arr = np.load(arr_path, allow_pickle=False)
                    except (OSError, ValueError, KeyError):
                        continue  # a damaged shard is ignored and its prompts are encoded again
                    if arr.ndim != 2 or arr.shape[0] != len(prompts):
                        continue
                    self._rows.update(zip(prompts, arr))
        return self._rows

    def lookup(self, prompts: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
        """Split prompts into (found embeddings, missing prompts)."""
        rows = self._load()
        found = {p: rows[p] for p in prompts if p in rows}
        return found, [p for p in prompts if p not in rows]

    def add(self, prompts: list[str], embeddings: np.ndarray) -> None:
        """Store new embeddings as one shard; merges shards when there are many."""
        if not prompts:
            return
        rows = self._load()
        rows.update(zip(prompts, embeddings))
        with file_lock(self.dir / ".lock"):
            name = uuid.uuid4().hex
            save_npy_atomic(self.dir / f"{name}.npy", np.asarray(embeddings, dtype=np.float32))
            write_json_atomic(self.dir / f"{name}.json", {"prompts": list(prompts)})
            shards = sorted(self.dir.glob("*.json"))
            if len(shards) > MAX_SHARDS:
                self._merge(shards)

    def _merge(self, shards: list[Path]) -> None:
        self._rows = None
        rows = self._load()
        name = "merged-" + uuid.uuid4().hex
        keys = list(rows)
        save_npy_atomic(self.dir / f"{name}.npy", np.stack([rows[k] for k in keys]).astype(np.float32))
        write_json_atomic(self.dir / f"{name}.json", {"prompts": keys})
        for meta in shards:
            meta.unlink(missing_ok=True)
            meta.with_suffix(".npy").unlink(missing_ok=True)
