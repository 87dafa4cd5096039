"""Model x task -> rows: the shared runner, zero-shot, retrieval, linear and few-shot probes, replay, sweep."""
