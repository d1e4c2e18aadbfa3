"""Input pipelines: sources, tokenizers and transforms."""
