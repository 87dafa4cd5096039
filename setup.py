"""Packages are discovered from pyproject.toml ([tool.setuptools.packages.find]); the shipped data folders
tasks/ and prompts/ sit at the top level, mapped by [tool.setuptools.package-dir] to clip_bench.data.*,
where discovery cannot see them: they are added here."""

from __future__ import annotations

from typing import Any

from setuptools import setup
from setuptools.dist import Distribution

#: Packages whose folders are mapped from elsewhere in pyproject.toml's [tool.setuptools.package-dir].
MAPPED_PACKAGES = ("clip_bench.data.tasks", "clip_bench.data.prompts")


class _Distribution(Distribution):
    def parse_config_files(self, *args: Any, **kwargs: Any) -> None:
        super().parse_config_files(*args, **kwargs)  # applies pyproject.toml: the discovered packages
        self.packages = [*(self.packages or []), *(p for p in MAPPED_PACKAGES if p not in (self.packages or []))]


setup(distclass=_Distribution)
