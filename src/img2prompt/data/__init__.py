"""Prompt data: read corpora, clean, embed, de-duplicate and split into folds."""
