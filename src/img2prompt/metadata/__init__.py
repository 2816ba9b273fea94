"""Reading the prompt and settings that Stable Diffusion front ends embed in their image files
(`reader.py`); for people's own images, never for the competition's pixel-only task."""

from img2prompt.metadata.reader import GenerationMetadata, read_metadata

__all__ = ["GenerationMetadata", "read_metadata"]
