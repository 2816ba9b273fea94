"""`img2prompt demo`: the main job on embedded defaults, nothing to download.

1. `describe` with the default model and bank on example photographs that scikit-image ships
   inside its wheel: a readable prompt for each, with its match.
2. When the competition sample is beside the repository (`../shared/data/kaggle_sample`), the
   same on its 7 images, next to their true prompts, with the mean cosine of the predicted
   embeddings to the true ones (the competition metric) and a check of the target encoder
   against `sample_submission.csv`.
3. The training side's first stage: the prompts shipped with the package prepared into a
   training table (clean, embed, de-duplicate, fold).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from img2prompt.app.report import console, print_descriptions, print_prepare_report
from img2prompt.describer import Describer, DescribeRun, write_descriptions
from img2prompt.errors import ConfigError
from img2prompt.metrics import cosines as row_cosines


def shared_dir_candidates() -> list[Path]:
    """Where the project's `shared` folder may be, in order: $IMG2PROMPT_SHARED, beside the
    source checkout this module runs from (`REPO/src/img2prompt/app/demo.py` -> `REPO/../shared`),
    then beside the current folder (for an installed package run from inside a checkout)."""
    candidates = (
        [Path(os.environ["IMG2PROMPT_SHARED"])] if "IMG2PROMPT_SHARED" in os.environ else []
    )
    repo = Path(__file__).resolve().parents[3]  # demo.py -> app -> img2prompt -> src -> REPO
    return [*candidates, repo.parent / "shared", Path.cwd().parent / "shared"]


def kaggle_sample_dir() -> Path | None:
    """The competition sample: `data/kaggle_sample` in the first shared folder that has it."""
    for shared in shared_dir_candidates():
        sample = shared / "data" / "kaggle_sample"
        if (sample / "sample_submission.csv").is_file():
            return sample
    return None


EXAMPLE_IMAGES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
)
"""Photographs in scikit-image's wheel (`skimage/data`), public domain or CC0 by its README."""


def example_images() -> list[Path]:
    """The example photographs, found without importing scikit-image (it is slow to import)."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the demo's example images come with scikit-image: pip install scikit-image"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return [folder / name for name in EXAMPLE_IMAGES if (folder / name).is_file()]


def run_demo(
    out: Path,
    mode: str = "best",
    describer: Describer | None = None,
    data_stage: bool = True,
) -> None:
    import time

    started = time.perf_counter()
    if describer is None:
        console.rule("[bold]loading the default model and prompt bank")
        t = time.perf_counter()
        describer = Describer("default", "default", mode=mode, progress=True)
        console.print(
            f"default model and bank ({len(describer.bank):,} entries), {describer.mode} "
            f"decoding; loaded in {time.perf_counter() - t:.1f} s",
            highlight=False,
        )

    console.rule("[bold]1. describe: example photographs → prompts")
    run = describer.describe_files(example_images())
    print_descriptions(run.descriptions, neighbors=False)
    write_descriptions(run, out / "examples.parquet")
    _timing(run, out / "examples.parquet")

    sample = kaggle_sample_dir()
    if sample is None:
        console.print(
            "(../shared/data/kaggle_sample not found: skipping the competition's sample images "
            "and the check against their true prompts)"
        )
    else:
        console.rule("[bold]2. the competition's 7 sample images, against their true prompts")
        _kaggle_sample(describer, sample, out)

    if data_stage:
        console.rule("[bold]3. data prepare: shipped prompts → training table")
        _data_stage(out)
    console.print(f"demo done in {time.perf_counter() - started:.0f} s", highlight=False)


def _timing(run: DescribeRun, path: Path) -> None:
    console.print(
        f"{len(run.descriptions)} images in {run.seconds:.1f} s; mean match "
        f"{run.mean_match:.3f} (cosine of each prompt's own MiniLM vector to the predicted one: "
        f"how well the words say the prediction, not how right it is); wrote {path}",
        highlight=False,
    )


def _kaggle_sample(describer: Describer, sample: Path, out: Path) -> None:
    import csv

    from img2prompt.predict.tables import read_truth

    with open(sample / "prompts.csv", newline="", encoding="utf-8") as f:
        truths = {row["imgId"]: row["prompt"] for row in csv.DictReader(f)}
    truth = read_truth(sample / "sample_submission.csv")  # rows by image id (the file stem)
    run = describer.describe_files([sample / "images"])
    write_descriptions(run, out / "kaggle_sample.parquet")
    stems = [Path(d.image).stem for d in run.descriptions]
    predicted = np.stack([d.embedding for d in run.descriptions])
    cosines = row_cosines(predicted, truth.targets[[truth.by_image[s] for s in stems]]).tolist()
    print_descriptions(
        run.descriptions,
        truths=[truths.get(stem, "?") for stem in stems],
        cosines=cosines,
        neighbors=False,
    )
    _timing(run, out / "kaggle_sample.parquet")
    console.print(
        f"[bold]mean cosine of the predicted embeddings to the true prompts' embeddings: "
        f"{np.mean(cosines):.4f}[/] (the competition metric, over {len(cosines)} images)",
        highlight=False,
    )

    # The target encoder against the competition's own vectors.
    rows = list(truths.items())
    ours = describer.encoder.encode([prompt for _, prompt in rows])
    order = [truth.by_image[image_id] for image_id, _ in rows]
    worst = float(np.abs(ours - truth.targets[order]).max())
    console.print(
        f"target encoder check: the true prompts embedded here vs sample_submission.csv, "
        f"max |ours − truth| = {worst:.2e} ({'matches' if worst <= 1e-5 else 'DOES NOT match'} "
        "to 1e-5)",
        highlight=False,
    )


def _data_stage(out: Path) -> None:
    from img2prompt.data.options import PrepareConfig
    from img2prompt.data.prepare import prepare

    prompts = resources.files("img2prompt") / "assets" / "demo_prompts.txt"
    with resources.as_file(prompts) as path:
        cfg = PrepareConfig(inputs=[path], out=out / "data", folds=3, group_threshold=0.7)
        print_prepare_report(prepare(cfg), cfg.out)
