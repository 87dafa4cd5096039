"""Model resolution and the backends that load open_clip and transformers checkpoints."""
