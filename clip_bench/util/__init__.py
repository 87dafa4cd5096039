"""Helpers every layer may use: errors, atomic file io, the lazy registry, resources, progress, distributed."""
