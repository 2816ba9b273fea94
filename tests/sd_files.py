"""Image files as Stable Diffusion front ends write them, made in the tests: A1111 text in PNG
chunks, EXIF UserComments and stealth pixels; ComfyUI graphs."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from image_helpers import drawn_png


def a1111_text(prompt: str, negative: str = "blurry", seed: int = 1) -> str:
    return (
        f"{prompt}\nNegative prompt: {negative}\n"
        f"Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: {seed}, Size: 512x512, "
        "Model hash: abc123, Model: sd15"
    )


def picture(seed: int = 0, size: tuple[int, int] = (160, 120)) -> Image.Image:
    return Image.open(io.BytesIO(drawn_png(*size, seed=seed))).convert("RGB")


def png_with_text(path: Path, chunks: dict[str, str], image: Image.Image | None = None) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value) if not value.isascii() else info.add_text(key, value)
    (image or picture()).save(path, "PNG", pnginfo=info)
    return path


def user_comment(text: str, charset: str = "UNICODE-BE") -> bytes:
    if charset == "UNICODE-BE":
        return b"UNICODE\0" + text.encode("utf-16-be")
    if charset == "UNICODE-LE":
        return b"UNICODE\0" + text.encode("utf-16-le")
    return b"ASCII\0\0\0" + text.encode("utf-8")


def with_user_comment(path: Path, text: str, fmt: str, charset: str = "UNICODE-BE") -> Path:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = user_comment(text, charset)
    picture().save(path, fmt, exif=exif)
    return path


def stealth(path: Path, text: str, variant: str = "stealth_pngcomp", size=(96, 96)) -> Path:
    """Hide `text` in the lowest bits the way the stealth-pnginfo extension does: the
    signature, the payload's bit length (32 bits), the payload, down each column."""
    payload = text.encode("utf-8")
    if variant.endswith("comp"):
        payload = gzip.compress(payload)
    data = variant.encode() + (len(payload) * 8).to_bytes(4, "big") + payload
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    image = np.asarray(picture(size=size).convert("RGBA")).copy()
    width, height = size
    if "rgb" in variant:
        plane = image[..., :3].transpose(1, 0, 2).reshape(-1)  # (x, y, channel) order
        assert len(bits) <= plane.size, "picture too small for the payload"
        plane[: len(bits)] = (plane[: len(bits)] & 0xFE) | bits
        image[..., :3] = plane.reshape(width, height, 3).transpose(1, 0, 2)
        Image.fromarray(image[..., :3], "RGB").save(path, "PNG")
    else:
        alpha = image[..., 3].T.reshape(-1).copy()
        alpha[:] = 255
        alpha[: len(bits)] = 254 | bits
        image[..., 3] = alpha.reshape(width, height).T
        Image.fromarray(image, "RGBA").save(path, "PNG")
    return path


def comfy_graph(positive: str, negative: str = "bad hands") -> dict:
    """A ComfyUI API graph: checkpoint -> two text encoders -> KSampler -> decode -> save."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 512, "height": 768, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 42,
                "steps": 25,
                "cfg": 6.5,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}},
    }


def comfy_png(path: Path, graph: dict) -> Path:
    return png_with_text(path, {"prompt": json.dumps(graph)})


def comfy_webp(path: Path, graph: dict, workflow: dict | None = None, frames: int = 2) -> Path:
    """An animated WebP as ComfyUI's SaveAnimatedWEBP writes it: EXIF Model (0x0110) holds
    `prompt:<json>`, Make (0x010F) `workflow:<json>`."""
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + json.dumps(graph)
    if workflow is not None:
        exif[0x010F] = "workflow:" + json.dumps(workflow)
    images = [picture(seed=i) for i in range(frames)]
    images[0].save(path, "WEBP", save_all=True, append_images=images[1:], exif=exif, duration=40)
    return path


def comfy_workflow(nodes: list[dict], links: list[list], **extra) -> dict:
    """An editor graph (`workflow`): nodes with widget values, links as ComfyUI lists them
    ([id, origin, origin slot, target, target slot, type])."""
    return {"last_node_id": len(nodes), "nodes": nodes, "links": links, **extra}


def wf_node(node_id, kind, widgets=None, inputs=(), outputs=(), mode=0) -> dict:
    """One editor node: `inputs` as (name, type, link id), `outputs` as (name, type)."""
    return {
        "id": node_id,
        "type": kind,
        "mode": mode,
        "widgets_values": widgets,
        "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs],
        "outputs": [{"name": n, "type": t, "links": []} for n, t in outputs],
    }
