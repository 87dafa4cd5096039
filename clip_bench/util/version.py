"""The version of clip-bench, recorded in every result row (kept equal to pyproject.toml's)."""

__version__ = "0.1.0"
