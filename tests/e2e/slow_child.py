"""Child-process scripts for tests that run clip-bench in a subprocess with image encoding slowed down,
so a test can kill, interrupt or race it in the middle of a feature extraction."""

from __future__ import annotations


def slow_encode_script(body: str, sleep: str = "0.15") -> str:
    """A ``python -c`` script that makes ``clip_bench.cache.extract.encode_images`` sleep before each batch,
    then runs ``body``. ``sleep`` is a Python expression evaluated per batch; ``slow.calls`` counts the
    batches so far (e.g. ``"0.15 if slow.calls <= 4 else 120"`` waits for a signal after 4 batches)."""
    return (
        "import sys, time\n"
        "import clip_bench.cache.extract as f\n"
        "real = f.encode_images\n"
        "def slow(*a, **k):\n"
        "    slow.calls = getattr(slow, 'calls', 0) + 1\n"
        f"    time.sleep({sleep})\n"
        "    return real(*a, **k)\n"
        "f.encode_images = slow\n"
        f"{body}\n"
    )
