"""``python -m clip_bench`` is the same as the ``clip-bench`` command."""

from clip_bench.cli.app import main

if __name__ == "__main__":
    raise SystemExit(main())
