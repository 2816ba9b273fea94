"""One command that runs every CUDA path with random weights of the real sizes.

    python benchmarks/gpu_check.py [--device cuda] [--json OUT.json]      # the GPU run, <= 8 min
    python benchmarks/gpu_check.py --device cpu --quick --json OUT.json   # scaled down, the tests

A GPU is lent rarely and for minutes, so this is prepared in advance: one run checks and times

- predict: CLIP ViT-L/14 at 224 and 336 px through the `Predictor` in bf16 and fp32: images/s,
  their share of a bf16 matmul ceiling measured in the same run, and the cosine of bf16 to fp32;
- train: ViT-B/16 then ViT-L/14, LP-FT in bf16-mixed through Fabric on synthetic images:
  images/s, peak memory, that the loss falls, and that a run stopped after one epoch resumes;
- generate: a tiny SD pipeline through `generate`, and timed denoising steps of a random UNet of
  Stable Diffusion 2's size at 768 px (fp16);
- index: the ViT-L text tower's encoding rate, and FAISS on the GPU where the installed faiss has
  GPU support (faiss-cpu has none: said so, not a failure);
- describe: a model and a bank on the device, end to end.

`--quick` swaps the real sizes for tiny ones (the same code paths, in well under 2 minutes on a
CPU). Each check prints a line and goes into `--json` as `{name, status, seconds, figures}`; the
exit code is 1 when any check failed. Weights are random: the figures are speed, memory and
numerical agreement, never quality.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The dev-only asset builders (the tiny SD pipeline) live in scripts/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench_train import make_dataset

# Vision towers (width, layers, heads, patch, image side) at the real sizes, and tiny stand-ins.
VIT_L14 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 14,
}
VIT_B16 = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "patch_size": 16,
}
TINY_VIT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "patch_size": 8,
}
VIT_L14_TEXT = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
}
TINY_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 77,
}


class Check:
    """A named check's outcome: `ok`, `skipped` (said why) or `failed` (with the error)."""

    def __init__(self, name: str) -> None:
        self.name, self.status, self.figures, self.seconds = name, "ok", {}, 0.0

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 2),
            "figures": self.figures,
        }


def run_check(name: str, fn: Callable[[], dict]) -> Check:
    check = Check(name)
    started = time.perf_counter()
    try:
        check.figures = fn()
        if check.figures.pop("skipped", None):
            check.status = "skipped"
    except Exception as e:  # a failed path is a result: report it, go on to the next
        check.status = "failed"
        check.figures = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
    check.seconds = time.perf_counter() - started
    shown = {k: v for k, v in check.figures.items() if k != "trace"}
    print(f"  {check.status.upper():7s} {name:22s} {check.seconds:6.1f} s  {shown}", flush=True)
    return check


def peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_ceiling(device, quick: bool) -> float:
    """bf16 matmul TFLOP/s on this device: the ceiling model throughput is compared with."""
    import torch

    n = 1024 if quick else 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    a @ b
    synchronize(device)
    repeats = 3 if quick else 20
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def save_vision_tower(folder: Path, shape: dict, side: int) -> str:
    """A random CLIP vision tower saved like a checkpoint: `hf-clip:FOLDER`."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(**shape, image_size=side)).save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    ).save_pretrained(folder)
    return f"hf-clip:{folder}"


# --- the checks -------------------------------------------------------------------------------


def check_predict(tmp: Path, device: str, quick: bool, side: int, ceiling: float) -> dict:
    import torch

    from img2prompt.models.model import ImageToPromptModel, ModelConfig, save_model
    from img2prompt.predict.predictor import PredictOptions, Predictor

    shape = TINY_VIT if quick else VIT_L14
    spec = save_vision_tower(tmp / f"vit-{side}", shape, side)
    model = ImageToPromptModel(ModelConfig(spec), pretrained=True)
    folder = save_model(model, tmp / f"model-{side}")
    images = 16 if quick else 256
    crops = np.random.default_rng(0).integers(0, 256, (images, side, side, 3), dtype=np.uint8)
    rows = {}
    for precision in ("fp32", "bf16"):
        predictor = Predictor(
            folder,
            PredictOptions(
                device=device, precision=precision, batch_size=8 if quick else 64, compile=False
            ),
        )
        predictor.embed_crops(crops[: predictor.batch_size])  # warm-up
        synchronize(predictor.device)
        start = time.perf_counter()
        vectors = [
            predictor.embed_crops(crops[i : i + predictor.batch_size])
            for i in range(0, images, predictor.batch_size)
        ]
        synchronize(predictor.device)
        seconds = time.perf_counter() - start
        rows[precision] = (torch.cat(vectors).numpy(), images / seconds)
    cosine = np.sum(rows["fp32"][0] * rows["bf16"][0], axis=1)
    tokens = (side // shape["patch_size"]) ** 2 + 1
    params = sum(p.numel() for p in model.backbone.parameters())
    achieved = 2 * params * tokens * rows["bf16"][1] / 1e12  # TFLOP/s, the matmuls' share
    if cosine.min() < 0.999:
        raise AssertionError(f"bf16 moved embeddings to cosine {cosine.min():.5f} of fp32")
    return {
        "images_per_s_bf16": round(rows["bf16"][1], 1),
        "images_per_s_fp32": round(rows["fp32"][1], 1),
        "share_of_bf16_matmul_ceiling": round(achieved / ceiling, 3),
        "min_cosine_bf16_to_fp32": round(float(cosine.min()), 6),
    }


def check_train(tmp: Path, device: str, quick: bool, name: str, shape: dict, side: int) -> dict:
    import csv

    import torch

    from img2prompt.train.loop import train
    from img2prompt.train.options import TrainConfig

    data = make_dataset(tmp / f"data-{name}", 8 if quick else 64, side=side)
    spec = save_vision_tower(tmp / f"tower-{name}", shape, side)
    cuda = torch.device(device).type == "cuda"
    common = dict(
        data=data,
        backbone=spec,
        workers=0,
        fold="1",
        lp_epochs=1,
        epochs=2,
        batch_size=4 if quick else 16,
        lr=1e-3,
        accelerator="cuda" if cuda else "cpu",
        precision="bf16-mixed" if cuda else "32-true",
    )
    reset_peak(torch.device(device))
    out = tmp / f"run-{name}"
    first = train(TrainConfig.of(out=out, stop_after_epochs=1, **common), progress=False)
    if not first.stopped_early:
        raise AssertionError("--stop-after-epochs 1 did not stop the run")
    train(TrainConfig.of(out=out, resume=True, **common), progress=False)  # resumes, finishes
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    if [r["phase"] for r in rows] != ["lp", "ft", "ft"]:
        raise AssertionError(f"the resumed run's epochs are {[r['phase'] for r in rows]}")
    losses = [float(r["train_loss"]) for r in rows]
    if not losses[-1] < losses[0]:
        raise AssertionError(f"the loss did not fall: {losses}")
    return {
        "images_per_s_ft": round(float(rows[-1]["images_per_s"]), 1),
        "peak_memory_mb": round(peak_memory_mb(torch.device(device))),
        "losses": [round(x, 4) for x in losses],
        "resumed": True,
    }


def check_generate(tmp: Path, device: str, quick: bool) -> dict:
    import pyarrow as pa
    import torch
    from tiny_pipeline import build_tiny_pipeline

    from img2prompt.generate.options import GenerateConfig
    from img2prompt.generate.run import generate
    from img2prompt.io import write_parquet

    pipeline = build_tiny_pipeline(tmp / "tiny-sd", words=["fox", "castle"])
    write_parquet(
        pa.table({"id": ["a", "b"], "prompt": ["a fox", "a castle"]}), tmp / "gen-prompts.parquet"
    )
    cfg = GenerateConfig(
        prompts=tmp / "gen-prompts.parquet",
        out=tmp / "gen",
        model=str(pipeline),
        preset="fast",
        steps=2,
        size=64,
        device=device,
        batch_size=2,
    )
    report = generate(cfg, progress=False)
    figures = {"tiny_pipeline_images": report.images}
    # Denoising steps of a UNet of Stable Diffusion 2's size (random), at 768 px (96x96 latents).
    from diffusers import UNet2DConditionModel

    dev = torch.device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    if quick:
        from tiny_pipeline import tiny_unet

        unet = tiny_unet()
        latent, context, width = 8, 32, 64
    else:
        unet = UNet2DConditionModel(
            sample_size=96,
            cross_attention_dim=1024,
            attention_head_dim=(5, 10, 20, 20),
            use_linear_projection=True,
        )
        latent, context, width = 96, 1024, 768
    unet = unet.to(dev, dtype).eval()
    sample = torch.randn(2, 4, latent, latent, device=dev, dtype=dtype)  # cond + uncond
    text = torch.randn(2, 77, context, device=dev, dtype=dtype)
    steps = 3 if quick else 10
    with torch.inference_mode():
        unet(sample, 10, encoder_hidden_states=text)
        synchronize(dev)
        start = time.perf_counter()
        for t in range(steps):
            unet(sample, 999 - t, encoder_hidden_states=text)
        synchronize(dev)
    figures |= {
        "unet_side_px": width,
        "unet_steps_per_s": round(steps / (time.perf_counter() - start), 2),
        "unet_params_m": round(sum(p.numel() for p in unet.parameters()) / 1e6),
    }
    return figures


def check_index(tmp: Path, device: str, quick: bool) -> dict:
    import torch
    from tiny_pipeline import write_tokenizer_files
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    write_tokenizer_files(tmp / "tok", ["a", "red", "fox", "castle", "painting"])
    tokenizer = CLIPTokenizer.from_pretrained(tmp / "tok", model_max_length=77)
    shape = TINY_TEXT if quick else VIT_L14_TEXT
    dev = torch.device(device)
    config = CLIPTextConfig(
        **shape,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = CLIPTextModel(config).to(dev).eval()
    prompts = [f"a red fox painting number {i}, castle" for i in range(64 if quick else 4096)]
    batch = 32 if quick else 256
    start = time.perf_counter()
    with (
        torch.inference_mode(),
        torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"),
    ):
        for i in range(0, len(prompts), batch):
            tokens = tokenizer(
                prompts[i : i + batch], padding=True, truncation=True, return_tensors="pt"
            ).to(dev)
            model(**tokens).pooler_output.float().cpu()
    rate = len(prompts) / (time.perf_counter() - start)
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    figures = {"text_prompts_per_s": round(rate, 1), "faiss_gpus": gpus}
    if gpus and dev.type == "cuda":
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, faiss.IndexFlatIP(768))
        index.add(np.random.default_rng(0).normal(size=(100_000, 768)).astype(np.float32))
        figures["faiss_gpu_search"] = "ok"
    else:
        figures["faiss_gpu_search"] = "not available: the installed faiss has no GPU support"
    return figures


def check_describe(tmp: Path, device: str, quick: bool) -> dict:
    from PIL import Image

    from img2prompt.describer import Describer
    from img2prompt.predict.predictor import PredictOptions
    from img2prompt.targets.encoder import load_encoder
    from img2prompt.text.bank import build_bank

    phrases = tmp / "subjects.txt"
    phrases.write_text("a red fox\na castle on a hill\na bowl of ramen\noil painting\nphoto\n")
    encoder = load_encoder(device=device)
    bank = build_bank([phrases], tmp / "bank", encoder, progress=False).path
    describer = Describer(
        "default", bank, mode="fast", predict_options=PredictOptions(device=device)
    )
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)) for _ in range(4)]
    described = describer.describe(images)
    if not all(d.prompt for d in described):
        raise AssertionError("an image got no prompt")
    return {
        "images": len(described),
        "device": str(describer.predictor.device),
        "prompt": described[0].prompt,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu")
    p.add_argument("--quick", action="store_true", help="tiny models: the code paths, fast")
    p.add_argument("--json", type=Path, help="write every check's outcome here")
    args = p.parse_args(argv)

    import torch

    from img2prompt.device import resolve_device

    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"== gpu_check on {name} ({device}), torch {torch.__version__}"
        + (", quick" if args.quick else ""),
        flush=True,
    )
    started = time.perf_counter()
    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        ceiling = matmul_ceiling(device, args.quick)
        print(f"  bf16 matmul ceiling: {ceiling:.2f} TFLOP/s", flush=True)
        sides = (32, 48) if args.quick else (224, 336)
        for side in sides:
            checks.append(
                run_check(
                    f"predict vit-l/14@{side}",
                    lambda s=side: check_predict(tmp, str(device), args.quick, s, ceiling),
                )
            )
        towers = [
            ("vit-b/16", TINY_VIT if args.quick else VIT_B16, 32 if args.quick else 224),
            ("vit-l/14", TINY_VIT if args.quick else VIT_L14, 32 if args.quick else 224),
        ]
        for tower, shape, side in towers:
            checks.append(
                run_check(
                    f"train {tower} lp-ft",
                    lambda t=tower, s=shape, d=side: check_train(
                        tmp, str(device), args.quick, t, s, d
                    ),
                )
            )
        checks.append(run_check("generate", lambda: check_generate(tmp, str(device), args.quick)))
        checks.append(run_check("index", lambda: check_index(tmp, str(device), args.quick)))
        checks.append(run_check("describe", lambda: check_describe(tmp, str(device), args.quick)))
    failed = [c.name for c in checks if c.status == "failed"]
    seconds = time.perf_counter() - started
    print(
        f"  {len(checks) - len(failed)} of {len(checks)} checks passed in {seconds:.0f} s"
        + (f"; FAILED: {', '.join(failed)}" if failed else ""),
        flush=True,
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": name,
                    "quick": args.quick,
                    "seconds": seconds,
                    "ceiling_tflops": ceiling,
                    "checks": [c.to_json() for c in checks],
                },
                indent=1,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
