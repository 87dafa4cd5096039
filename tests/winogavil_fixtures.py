"""A WinoGAViL fixture in the real on-disk format, built from the digits: a Hugging Face ``datasets.Dataset`` with
the columns of ``nlphuji/winogavil`` that DataComp reads (``cue``, ``candidates``, ``associations``,
``candidate_images``, plus ``ID`` and ``num_associations`` as the hub's copy has), saved with ``save_to_disk``.

Each instance's cue names a digit ("7", or its word, "Eight"); its candidates are digit images named
``<digit>_<index>``, and the associations are the candidates showing the cue's digit (1-3 of them), so the
tiny CLIP, which reads digits, has real skill on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dataset_fixtures import digits_rgb, encode

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIZES = (5, 6, 10, 12)


def digit_instances(per_size: int = 5, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """(instances, the digit images): `per_size` instances of each candidate count, in mixed order.

    An instance is ``{"cue", "candidates", "associations", "images", "digits"}`` (``images``: indices into the
    returned images). Every third cue is its digit's word, capitalised (instance 2: "Eight"), the others the digit;
    the first instance also lists an association that is not among its candidates (DataComp ignores it).
    """
    images, labels = digits_rgb("test", 32)
    rng = np.random.default_rng(seed)
    by_digit = {d: list(rng.permutation(np.flatnonzero(labels == d))) for d in range(10)}
    out = []
    for i, size in enumerate(np.repeat(SIZES, per_size)[rng.permutation(len(SIZES) * per_size)]):
        size = int(size)
        digit = 8 if i == 2 else int(rng.integers(10))  # instance 2's cue is "Eight": the prompt "An eight"
        n_true = int(rng.integers(1, 4))
        others = [int(d) for d in rng.choice([d for d in range(10) if d != digit], size - n_true)]
        digits = [digit] * n_true + others
        order = rng.permutation(size)
        digits = [digits[j] for j in order]
        picked = [int(by_digit[d].pop()) for d in digits]
        names = [f"{d}_{k}" for d, k in zip(digits, picked)]
        cue = WORDS[digit].capitalize() if i % 3 == 2 else str(digit)
        associations = [n for n, d in zip(names, digits) if d == digit]
        if i == 0:
            associations.append("a_candidate_of_another_instance")
        out.append({"cue": cue, "candidates": names, "associations": associations, "images": picked,
                    "digits": digits})
    return out, images


def winogavil_dataset(instances: list[dict], images: np.ndarray):  # -> datasets.Dataset
    """The instances as a ``datasets.Dataset`` with WinoGAViL's columns (images PNG-encoded)."""
    import datasets

    feats = datasets.Features({
        "candidates": datasets.Sequence(datasets.Value("string")),
        "cue": datasets.Value("string"),
        "associations": datasets.Sequence(datasets.Value("string")),
        "candidate_images": datasets.Sequence(datasets.Image()),
        "num_associations": datasets.Value("int64"),
        "ID": datasets.Value("int64"),
    })
    return datasets.Dataset.from_dict({
        "candidates": [x["candidates"] for x in instances],
        "cue": [x["cue"] for x in instances],
        "associations": [x["associations"] for x in instances],
        "candidate_images": [[{"bytes": encode(images[j], "png"), "path": None} for j in x["images"]]
                             for x in instances],
        "num_associations": [len(x["associations"]) for x in instances],
        "ID": list(range(100, 100 + len(instances))),
    }, features=feats)


def write_winogavil(split_dir: Path, instances: list[dict], images: np.ndarray) -> Path:
    """The instances saved with ``save_to_disk`` in `split_dir` (``<data root>/winogavil/test``)."""
    winogavil_dataset(instances, images).save_to_disk(str(split_dir))
    return split_dir
