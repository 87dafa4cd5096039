"""The golden run: the whole scenario of ``golden_scenario.py`` must reproduce ``golden_run.json`` exactly.

It exists for reorganisations of the code (modules moved into subpackages, imports changed): such a change
must reproduce every result row (values to 1e-9, ``result_id``, fingerprints, identity fields), the per-sample
outcomes, the feature- and text-cache keys (so old caches stay hits), the CLI output of zeroshot, fewshot,
compare and report, and the report's tables. Only dates, versions, run times and the temp folder are
normalised. When a change of behaviour is intended, re-record with ``python tests/golden/record_golden.py``
and say why in the commit.

Floats and content hashes also depend on the numeric libraries, the fixtures' image encoder and the processor
(``NUMERIC_ENVIRONMENT``): where any of them differs from the recording, the comparison would test the
environment rather than the code, so the test is skipped with the differences named (re-record there).
"""

from __future__ import annotations

import json

import pytest
from golden_scenario import (
    GOLDEN_FILE,
    RECORD_COMMAND,
    differences,
    environment,
    environment_changes,
    run_scenario,
    summarise,
)


def test_golden_run_reproduces_the_recorded_rows_caches_and_outputs(tmp_path):
    assert GOLDEN_FILE.is_file(), f"{GOLDEN_FILE.name} is missing; record it with `{RECORD_COMMAND}`"
    recorded = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
    recorded_env = recorded.pop("environment", {})
    if changes := environment_changes(recorded_env):
        pytest.skip(f"{GOLDEN_FILE.name} was recorded in another numeric environment ({'; '.join(changes)}); "
                    f"re-record it here with `{RECORD_COMMAND}` to compare")
    now = run_scenario(tmp_path / "run")
    diffs = differences(recorded, now)
    if diffs:
        env_now = environment()
        changed = [f"{k} {recorded_env.get(k)} -> {env_now.get(k)}"
                   for k in sorted(set(recorded_env) | set(env_now)) if recorded_env.get(k) != env_now.get(k)]
        lines = [f"the golden run differs from {GOLDEN_FILE.name} in {len(diffs)} places "
                 "(key path: recorded, now):",
                 *summarise(diffs)]
        if changed:
            lines.append("environment changed since recording: " + "; ".join(changed))
        lines.append(f"If this change of behaviour is intended, re-record with `{RECORD_COMMAND}` "
                     "(from the repository root) and commit the new golden_run.json.")
        raise AssertionError("\n".join(lines))
