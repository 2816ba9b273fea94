"""`img2prompt demo`: the pipeline on embedded defaults, nothing to download.

Today the data stage: the prompts shipped with the package are prepared into a training table, and
when the competition sample is beside the repository (`../shared/data/kaggle_sample`), its prompts
are embedded and compared with the true targets of `sample_submission.csv`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from img2prompt.report import console, print_prepare_report


def kaggle_sample_dir() -> Path | None:
    """The competition sample: $IMG2PROMPT_SHARED/data/kaggle_sample, else ../shared/data/..."""
    candidates = (
        [Path(os.environ["IMG2PROMPT_SHARED"])] if "IMG2PROMPT_SHARED" in os.environ else []
    )
    candidates += [
        Path.cwd().parent / "shared",
        Path(__file__).resolve().parents[3].parent / "shared",
    ]
    for shared in candidates:
        sample = shared / "data" / "kaggle_sample"
        if (sample / "sample_submission.csv").is_file():
            return sample
    return None


def run_demo(out: Path) -> None:
    from img2prompt.config import PrepareConfig
    from img2prompt.data.prepare import prepare

    prompts = resources.files("img2prompt") / "assets" / "demo_prompts.txt"
    with resources.as_file(prompts) as path:
        console.rule("[bold]1. data prepare: shipped prompts → training table")
        cfg = PrepareConfig(inputs=[path], out=out / "data", folds=3, group_threshold=0.7)
        print_prepare_report(prepare(cfg), cfg.out)

    sample = kaggle_sample_dir()
    if sample is None:
        console.print(
            "(../shared/data/kaggle_sample not found: skipping the check against the "
            "competition's true targets)"
        )
        return
    console.rule("[bold]2. targets vs the competition's sample_submission.csv")
    import csv

    from img2prompt.data.embed import load_encoder
    from img2prompt.predict.submission import read_submission

    with open(sample / "prompts.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    ids, truth = read_submission(sample / "sample_submission.csv")
    ours = load_encoder().encode([r["prompt"] for r in rows])
    order = [ids.index(r["imgId"]) for r in rows]
    worst = float(np.abs(ours - truth[order]).max())
    console.print(
        f"{len(rows)} prompts embedded; max |ours − truth| = {worst:.2e} "
        f"({'matches' if worst <= 1e-5 else 'DOES NOT match'} to 1e-5)"
    )
