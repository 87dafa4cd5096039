"""Running the CLI in-process as a user would, and checking that a mistake is one line with exit status 2."""

from __future__ import annotations

import pytest

from clip_bench.cli.app import main


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit status, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors on the old code
        code = exc.code if isinstance(exc.code, int) else 2
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The CLI fails with status 2 and exactly one line on stderr (no traceback); returns that line."""
    code, _, err = cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, err)
    assert "Traceback" not in err
    return lines[0]
