"""The 54 real files of ../shared/data/sd_metadata/more: each truth worked out by reading the
file (the graph's nodes, the parameters text), then asserted exactly; the camera, C2PA and
GIMP-saved files carry no prompt. Also A1111's extra passes and the web UIs' names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from img2prompt.metadata import read_metadata
from sd_files import png_with_text

CAMERAS = ("Canon_40D_photoshop_import", "Kodak_CX7530", "Pentax_K10D", "jolla", "Sony_HDR-HC3",
           "Olympus_C8080WZ", "Panasonic_DMC-FZ30")  # fmt: skip
SIGNED = ("c2_XCA", "c2__30b68ca0__cloudx", "c2__819e6360__P1000827", "c2__9735b328__cloud")
NO_PROMPT = [
    *(f"exif/ex__{n}.jpg" for n in CAMERAS),
    *(f"c2pa/{n}.jpg" for n in SIGNED),
    "swarm/sw__4085f304__lora-arcane-cat.jpg",  # re-saved by GIMP: its only comment says so
]
COMFY = {  # file -> (node whose text is the base pass's prompt, negative text, passes' roles)
    "cex/cex__edit_models_sdxl_edit_model.png": ("6", None, ["base"]),
    "cex/cex__flux_flux_dev_example.png": ("6", None, ["base"]),
    "cex/cex__hidream_hidream_full_example.png": ("16", "blurry", ["base"]),
    "cex/cex__lora_lora.png": ("6", "bad hands", ["base"]),
    "cex/cex__model_merging_model_merging_lora.png": ("6", "text, watermark", ["base"]),
    "cex/cex__stable_cascade_stable_cascade__text_to_image.png": (
        "6", "text, watermark", ["base", "refiner"],
    ),
    "cex/cex__mochi_mochi_text_to_video_example.webp": ("6", None, ["base"]),
}  # fmt: skip


@pytest.fixture(scope="module")
def more(shared_data: Path) -> Path:
    return shared_data / "sd_metadata" / "more"


def _graph(path: Path) -> dict:
    with Image.open(path) as image:
        if "prompt" in image.info:
            return json.loads(image.info["prompt"])
        return json.loads(image.getexif()[0x0110].split(":", 1)[1])  # the WebP's EXIF Model


def test_all_54_files_are_read_without_error(more):
    files = sorted(p for p in more.rglob("*") if p.suffix in (".png", ".jpg", ".webp"))
    assert len(files) == 54
    for path in files:
        found = read_metadata(path)
        assert found.error is None, path.name
        json.dumps(found.to_json(), allow_nan=False)


@pytest.mark.parametrize("name", NO_PROMPT)
def test_files_without_a_prompt(more, name):
    found = read_metadata(more / name)
    assert (found.prompt, found.generator, found.passes) == (None, None, []), name


@pytest.mark.parametrize("name", sorted(COMFY))
def test_comfyui_examples(more, name):
    node, negative, roles = COMFY[name]
    found = read_metadata(more / name)
    assert found.generator == "ComfyUI"
    assert found.prompt == _graph(more / name)[node]["inputs"]["text"].strip()
    assert found.negative_prompt == negative  # the SDXL edit model's negative is ""
    assert [p.role for p in found.passes] == roles


def test_comfyui_known_prompts(more):
    mochi = read_metadata(more / "cex/cex__mochi_mochi_text_to_video_example.webp")
    text = "a fox moving quickly in a beautiful winter scenery nature trees sunset tracking camera"
    assert mochi.prompt == text and mochi.settings["seed"] == 704883238463297
    edit = read_metadata(more / "cex/cex__edit_models_sdxl_edit_model.png")  # DualCFGGuider
    assert edit.prompt == "snow at sunset oil painting" and edit.passes[0].node == "37:8"
    assert read_metadata(more / "cex/cex__lora_lora.png").prompt == "masterpiece best quality girl"


def test_prompt_reader_examples_have_no_prompt_but_say_why(more):
    """The graph's texts come from an SDPromptReader node reading another image at run time:
    no prompt (its file name is not one), the text it showed last is a candidate."""
    for name in ("prn__hires_fix_example.png", "prn__lora_example.png"):
        found = read_metadata(more / "prn" / name)
        assert (found.prompt, found.negative_prompt, found.generator) == (None, None, "ComfyUI")
        assert "SDPromptReader (node 1)" in found.note
        assert found.candidates[0].startswith("ultra realistic 8k cg, HDR, epic")
        assert not any("00067-2302238556" in c for c in found.candidates)
    hires = read_metadata(more / "prn" / "prn__hires_fix_example.png")
    assert [p.role for p in hires.passes] == ["base", "hires"]
    # The SDXL example's encoders take two literal primitives: "CLIP_G" and "CLIP_L".
    sdxl = read_metadata(more / "prn" / "prn__sdxl_example.png")
    assert (sdxl.prompt, sdxl.composed) == ("CLIP_G, CLIP_L", True)
    assert [p.role for p in sdxl.passes] == ["base", "refiner"]


def test_swarmui(more):
    for name in ("sw__31aac00c__cascade.jpg", "sw__d85256ad__flux-schnell.jpg"):
        found = read_metadata(more / "swarm" / name)
        with Image.open(more / "swarm" / name) as image:
            comment = image.getexif().get_ifd(0x8769)[0x9286]
        body = comment[8:]
        params = json.loads(body.decode("utf-16-be" if body[0] == 0 else "utf-16-le").strip("\0"))
        assert found.generator == "SwarmUI"
        assert found.prompt == params["sui_image_params"]["prompt"]
        assert found.settings["seed"] == 1


def test_sdnext_files_are_named_and_their_settings_read(more):
    files = sorted((more / "sdnext").glob("*.jpg"))
    assert len(files) == 30
    for path in files:
        found = read_metadata(path)
        with Image.open(path) as image:
            raw = image.getexif().get_ifd(0x8769)[0x9286][8:]
        text = raw.decode("utf-16-be" if raw[0] == 0 else "utf-16-le").strip("\0")
        prompt, _, rest = text.partition("\nNegative prompt:")
        negative = rest.split("\n", 1)[0].strip() or None
        line = text.rsplit("\n", 1)[1]
        assert (found.generator, found.prompt) == ("SD.Next", prompt.strip()), path.name
        assert found.negative_prompt == negative, path.name
        assert found.settings["steps"] == int(re.search(r"Steps: (\d+)", line).group(1))
        assert found.settings["seed"] == int(re.search(r"Seed: (\d+)", line).group(1))
        assert found.settings["size"] == re.search(r"Size: (\d+x\d+)", line).group(1)
        assert found.settings["app"] == "SD.Next" and "pipeline" in found.settings
    moody = read_metadata(
        more / "sdnext/sdn__models__Reference__MoodyRealMix-SDNQ-int8-svd-r32.jpg"
    )
    assert moody.negative_prompt is None and moody.settings["template"] == moody.prompt


@pytest.mark.parametrize(
    "version,app,name",
    [
        ("f2.0.1v1.10.1-previous-669-gdfdcbab6", None, "Forge"),
        ("v1.10.1", None, "AUTOMATIC1111"),
        ("d7eb90e", "SD.Next", "SD.Next"),
        ("v1.10.1-reForge-1a2b3c", None, "reForge"),
        ("ComfyUI", None, "ComfyUI"),
    ],
)
def test_web_ui_names(tmp_path, version, app, name):
    line = f"Steps: 20, Sampler: Euler, Seed: 1, Size: 512x512, Version: {version}"
    if app:
        line += f", App: {app}"
    path = png_with_text(tmp_path / "x.png", {"parameters": f"a cat\nNegative prompt: dog\n{line}"})
    assert read_metadata(path).generator == name


def test_a1111_hires_and_adetailer_prompts_are_passes(tmp_path):
    text = (
        "a castle on a cliff, (sunset:1.2)\nNegative prompt: blurry\n"
        "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 42, "
        'Size: 512x768, Model: sdxl, Denoising strength: 0.4, Hires prompt: "a castle, ultra '
        'detailed", Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, '
        'ADetailer model: face_yolov8n.pt, ADetailer prompt: "adorable face, joyful", '
        "ADetailer denoising strength: 0.35, ADetailer model 2nd: hand_yolov8n.pt, "
        'Lora hashes: "a: 1, b: 2", Version: v1.10.1'
    )
    found = read_metadata(png_with_text(tmp_path / "a.png", {"parameters": text}))
    assert (found.prompt, found.negative_prompt) == ("a castle on a cliff, (sunset:1.2)", "blurry")
    assert found.settings["scheduler"] == "Karras" and found.settings["lora_hashes"] == "a: 1, b: 2"
    assert [(p.role, p.positive) for p in found.passes] == [
        ("base", "a castle on a cliff, (sunset:1.2)"),
        ("hires", "a castle, ultra detailed"),
        ("detailer", "adorable face, joyful"),
        ("detailer", "a castle on a cliff, (sunset:1.2)"),  # no prompt of its own: the base one
    ]
    assert found.passes[1].settings["upscale"] == "2" and found.passes[1].settings["denoise"] == 0.4
    assert found.passes[2].settings["denoise"] == 0.35
