"""img2prompt: recover the prompt behind a Stable Diffusion image.

The target of everything is the 384-d all-MiniLM-L6-v2 embedding of the true prompt, scored by
mean cosine similarity (the Kaggle "Stable Diffusion - Image to Prompts" metric).
"""

__version__ = "0.1.0"
