"""WinoGAViL (``nlphuji/winogavil``) as DataComp reads it: a Hugging Face dataset saved with ``save_to_disk``.

Layout: ``<root>/<split>/`` written by ``Dataset.save_to_disk`` (what ``--download`` writes from
``datasets.load_dataset``), one row per instance with the columns DataComp's ``eval_utils/wino_eval.py`` reads:

- ``cue`` (text): the word the candidates are associated with;
- ``candidates`` (list of text): the candidates' names;
- ``associations`` (list of text): the names of the candidates associated with the cue;
- ``candidate_images`` (list of images): one image per candidate, in the order of ``candidates``.

Other columns are ignored. The dataset's samples are the candidate images, instance after instance (sample
``k`` is one candidate of one instance, ``targets[k] == k``), so each is encoded once through the feature
cache; the instances themselves (cues, candidates, associations) travel with the cached features. A
source's ``expected`` count counts instances, and ``--limit`` draws instances (stratified by their number
of candidates), every drawn instance bringing all its candidate images.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clip_bench.loaders.base import LabeledImages, LoadContext
from clip_bench.loaders.hf_datasets import (
    arrow_files,
    cell_file,
    check_cell_files,
    check_columns,
    column_values,
    load_from_disk,
    path_cells,
    to_pil,
)
from clip_bench.loaders.hub_download import hub_save_to_disk
from clip_bench.loaders.subset import subset_indices

CUE, CANDIDATES, ASSOCIATIONS, IMAGES = "cue", "candidates", "associations", "candidate_images"


@dataclass(frozen=True)
class Instances:
    """WinoGAViL instances: per instance its cue, its candidates' names and its associations' names."""

    cues: list[str]
    candidates: list[list[str]]
    associations: list[list[str]]

    @cached_property
    def n_candidates(self) -> np.ndarray:
        """Each instance's number of candidates."""
        return np.asarray([len(c) for c in self.candidates], dtype=np.int64)

    @cached_property
    def offsets(self) -> np.ndarray:
        """(n + 1,) where each instance's candidate images start among the samples (and where they end)."""
        return np.concatenate([[0], np.cumsum(self.n_candidates)]).astype(np.int64)

    def drawn(self, limit: int | None) -> np.ndarray:
        """The instances ``--limit`` draws (every instance without one), stratified by candidate count."""
        return subset_indices(len(self.cues), limit, labels=self.n_candidates)

    def to_dict(self) -> dict[str, Any]:
        return {"cues": self.cues, "candidates": self.candidates, "associations": self.associations}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Instances:
        return cls(list(raw["cues"]), [list(c) for c in raw["candidates"]], [list(a) for a in raw["associations"]])


class WinoGAViLImages(LabeledImages):
    """Every candidate image of every instance, instance after instance; images decode one at a time."""

    def __init__(self, dataset: Any, instances: Instances, where: str, files: list[Path] | None) -> None:
        self.dataset = dataset.select_columns([IMAGES])
        self.instances = instances
        self.where = where
        self.files = files
        counts = instances.n_candidates
        total = int(counts.sum())
        self.targets = np.arange(total, dtype=np.int64)
        self.rows = np.repeat(np.arange(len(counts)), counts)
        self.positions = np.arange(total) - np.repeat(instances.offsets[:-1], counts)

    @property
    def expected_count(self) -> int:
        """A source's ``expected`` count counts instances."""
        return len(self.instances.cues)

    def limit_indices(self, limit: int | None) -> np.ndarray:
        """The candidate images of the instances ``--limit`` draws (stratified by candidate count)."""
        chosen = self.instances.drawn(limit)
        starts, ends = self.instances.offsets[chosen], self.instances.offsets[chosen + 1]
        return np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]).astype(np.int64)

    def load_image(self, index: int) -> Image.Image:
        row, pos = int(self.rows[index]), int(self.positions[index])
        cell = self.dataset.data.table.column(IMAGES)[row].values[pos].as_py()
        return to_pil(cell)

    def describe(self, index: int) -> str:
        row, pos = int(self.rows[index]), int(self.positions[index])
        return f"{self.where}[{row}] candidate {pos} ({self.instances.candidates[row][pos]!r})"

    def data_files(self) -> list[str | Path] | None:
        return None if self.files is None else list(self.files)

    def cache_provenance(self) -> dict[str, Any]:
        """What the feature cache stores beside the image features: the instances, so a cache hit needs no data."""
        return {"winogavil": self.instances.to_dict()}


def _check_instances(ctx: LoadContext, raw: dict[str, list[Any]], image_counts: list[int], where: Path) -> Instances:
    """Every field DataComp reads, checked: an error names the instance and what is wrong."""

    def bad(i: int, what: str) -> Exception:
        return ctx.missing(f"instance {i} of WinoGAViL (row {i} of the dataset) {what}", where)

    def texts(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    for i, (cue, cands, assoc, n_images) in enumerate(
            zip(raw[CUE], raw[CANDIDATES], raw[ASSOCIATIONS], image_counts)):
        if not isinstance(cue, str) or not cue.strip():
            raise bad(i, f"has no cue (column {CUE!r} holds {cue!r})")
        if not texts(cands) or not cands:
            raise bad(i, f"has no list of candidate names (column {CANDIDATES!r} holds {str(cands)[:40]})")
        if not texts(assoc):
            raise bad(i, f"has no list of associations (column {ASSOCIATIONS!r} holds {str(assoc)[:40]})")
        if n_images != len(cands):
            raise bad(i, f"has {n_images} candidate images but {len(cands)} candidate names")
        if not set(assoc) & set(cands):
            raise bad(i, f"has no association among its candidates (cue {cue!r}); its Jaccard score is undefined")
    return Instances(list(raw[CUE]), [list(c) for c in raw[CANDIDATES]], [list(a) for a in raw[ASSOCIATIONS]])


def load_hf_winogavil(ctx: LoadContext, repo: str | None = None, revision: str | None = None) -> WinoGAViLImages:
    """The ``hf_winogavil`` loader: WinoGAViL saved with ``save_to_disk`` (``--download`` with a `repo` writes it)."""
    import pyarrow.compute as pc

    if ctx.root is None:
        raise ctx.missing("the source names no path")
    split_dir = ctx.root / ctx.source_split
    if not (split_dir / "state.json").exists():
        if ctx.download and repo:
            hub_save_to_disk(ctx, ctx.root, repo, revision)
        else:
            show = repo and not ctx.download and not ctx.source.download
            hint = f" (pass --download to fetch {repo} from the Hugging Face hub)" if show else ""
            raise ctx.missing(f"no save_to_disk folder ({ctx.source_split}/state.json){hint}", split_dir)
    ds = load_from_disk(ctx, split_dir)
    check_columns(ctx, ds.column_names, [CUE, CANDIDATES, ASSOCIATIONS, IMAGES], split_dir)
    if len(ds) == 0:
        raise ctx.missing("the dataset has no instances", split_dir)
    images = ds.data.table.column(IMAGES)
    counts = pc.list_value_length(images).fill_null(0).to_pylist()  # from the list offsets: no image is read
    raw = {col: column_values(ds, col) for col in (CUE, CANDIDATES, ASSOCIATIONS)}
    instances = _check_instances(ctx, raw, counts, split_dir)
    files = arrow_files(ds, split_dir)
    cells = [cell_file(p, None) for p in path_cells(images)]
    check_cell_files(ctx, cells, split_dir)
    return WinoGAViLImages(ds, instances, str(split_dir), [*files, *cells] if ds.cache_files else None)
