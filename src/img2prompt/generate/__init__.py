"""`img2prompt generate`: training images from prompts with Stable Diffusion (diffusers).

Modules: `presets` (named parameter sets, no heavy imports), `sd` (pipeline loading and
rendering), `prompts` (the prompts table), `shards` (work plan, seeds, shard folders, the index),
`ranks` (several processes: torchrun / accelerate), `run` (the command), `tiny` (a tiny random
pipeline for tests and benchmarks).
"""
