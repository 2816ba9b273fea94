"""Training-free CLIP path: a prompt index (`index build`) that is also a model folder.

An image is matched to the prompts of a prepared table by CLIP image-text cosine; its predicted
MiniLM vector is the softmax-weighted mean of the best prompts' own MiniLM targets.
"""
