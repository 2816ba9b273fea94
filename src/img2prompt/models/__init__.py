"""Backbones, heads and the saved-model format."""
