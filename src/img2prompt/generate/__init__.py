"""`img2prompt generate`: training images from prompts with Stable Diffusion (diffusers).

Modules: `presets` (named parameter sets, no heavy imports), `sd` (pipeline loading and
rendering), `prompts` (the prompts table), `shards` (work plan, seeds, shard folders, the index),
`run` (the command; several processes through `img2prompt.ranks`). The tiny random
pipeline the tests and benchmarks generate with is `scripts/tiny_pipeline.py`.
"""
