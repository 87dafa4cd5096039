"""Record the golden run: ``python tests/golden/record_golden.py`` writes ``tests/golden/golden_run.json``.

Runs the scenario of ``golden_scenario.py`` twice, each in a fresh temp folder, and writes the record only
if both runs agree (a value that differs between two runs can never be golden). ``--once`` skips the
second run. Re-record only when a change of behaviour is intended, and say so in the commit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the checkout this script lives in (not another installed copy), the test helpers, and this folder
for path in (HERE, HERE.parent, HERE.parent.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ.setdefault("CLIP_BENCH_CACHE", str(HERE.parent / ".cache-should-not-be-used"))

from golden_scenario import GOLDEN_FILE, differences, dump, environment, run_scenario  # noqa: E402


def _run() -> dict:
    with tempfile.TemporaryDirectory(prefix="clip-bench-golden-") as tmp:
        return run_scenario(Path(tmp))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="record the golden run to " + GOLDEN_FILE.name)
    parser.add_argument("--once", action="store_true", help="run the scenario once (no determinism check)")
    parser.add_argument("--out", type=Path, default=GOLDEN_FILE, help="where to write the record")
    args = parser.parse_args(argv)
    record = _run()
    if not args.once:
        diffs = differences(record, _run())
        if diffs:
            print("the golden scenario is not deterministic; two runs differ in:", file=sys.stderr)
            for line in diffs:
                print("  " + line, file=sys.stderr)
            return 1
    args.out.write_text(dump({**record, "environment": environment()}), encoding="utf-8")
    print(f"wrote {args.out} ({len(record['rows'])} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
