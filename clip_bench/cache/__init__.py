"""What is stored on disk to avoid recomputation: image features, text embeddings, data fingerprints."""
