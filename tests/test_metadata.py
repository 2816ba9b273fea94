"""Reading the prompts SD front ends embed: the real files of five front ends in
../shared/data/sd_metadata (expected values read from the files' own chunks), the stealth and
EXIF variants made here, ComfyUI graphs, hostile metadata, and the `metadata` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from img2prompt.app.cli import app
from img2prompt.metadata import read_metadata
from img2prompt.metadata.reader import MAX_TEXT_CHARS
from odd_images import write_odd_images
from sd_files import (
    a1111_text,
    comfy_graph,
    comfy_png,
    png_with_text,
    stealth,
    with_user_comment,
)


@pytest.fixture(scope="module")
def sd_metadata(shared_data: Path) -> Path:
    return shared_data / "sd_metadata"


def chunk(path: Path, key: str) -> str:
    with Image.open(path) as image:
        return image.info[key]


def test_automatic1111_png_jpeg_and_stealth(sd_metadata):
    folder = sd_metadata / "parsers" / "AUTOMATIC1111"
    for name in ("automatic1111_cropped.png", "automatic1111_cropped.jpg"):
        found = read_metadata(folder / name)
        assert (found.prompt, found.negative_prompt) == ("photo of a duck", "monochrome"), name
        assert found.generator == "AUTOMATIC1111"
        settings = found.settings
        assert (settings["steps"], settings["cfg_scale"], settings["seed"]) == (15, 5.0, 235284042)
        assert (settings["sampler"], settings["size"]) == ("UniPC", "512x400")
        assert settings["model"] == "realistic_realisticVisionV20_v20"
        assert settings["model_hash"] == "c0d1994c73"
        assert found.error is None
    hidden = read_metadata(folder / "automatic1111_stealth.png")  # the text is in the alpha bits
    assert (hidden.prompt, hidden.negative_prompt) == ("a circle", "a square")
    assert (
        hidden.settings["steps"] == 20 and hidden.settings["model"] == "realisticVisionV51_v51VAE"
    )


def test_comfyui_traces_the_sampler_that_made_the_image(sd_metadata):
    folder = sd_metadata / "parsers" / "ComfyUI"
    for path in sorted(folder.glob("*.png")):
        graph = json.loads(chunk(path, "prompt"))
        found = read_metadata(path)
        assert found.generator == "ComfyUI" and found.prompt, path.name
        texts = [
            node["inputs"]["text"].strip()
            for node in graph.values()
            if node["class_type"] == "CLIPTextEncode" and isinstance(node["inputs"]["text"], str)
        ]
        # The prompt is made of the graph's own text-encoder texts, nothing else.
        parts = [p for p in texts if p in found.prompt]
        assert parts and len(", ".join(parts)) >= len(found.prompt) - 2, path.name
        assert found.negative_prompt and found.negative_prompt not in found.prompt
    img2img = read_metadata(folder / "img2img_cropped.png")
    assert img2img.prompt == "photograph of victorian woman with wings, sky clouds, meadow grass"
    assert img2img.negative_prompt == "watermark, text"
    assert img2img.settings["model"] == "v1-5-pruned-emaonly.ckpt"
    assert (img2img.settings["steps"], img2img.settings["cfg_scale"]) == (20, 8.0)
    # Two passes: the prompt is the base pass's (the one that made the composition, from an
    # empty latent); the hires pass's own prompt is listed under `passes`.
    two_pass = read_metadata(folder / "unclip_2pass_cropped.png")
    assert two_pass.prompt == (
        "(waifu, anime, exceptional, best aesthetic, new, newest, best quality, masterpiece, "
        "extremely detailed:1.2)"
    )
    assert two_pass.settings["model"] == "wd-1-5-beta2-aesthetic-unclip-h-fp32.safetensors"
    assert two_pass.settings["size"] == "1280x704"  # the base pass's latent
    assert [p.role for p in two_pass.passes] == ["base", "hires"]
    hires = two_pass.passes[1]
    assert hires.positive == "beautiful scenery landscape outdoors mountains"
    assert hires.settings["model"] == "cardosAnimated_v20.safetensors"
    assert hires.settings["size"] == "1920x1088" and hires.settings["denoise"] < 1


def test_invokeai_three_formats_novelai_and_fooocus(sd_metadata):
    parsers = sd_metadata / "parsers"
    new = parsers / "InvokeAI" / "invokeai_imeta1.png"
    expected = json.loads(chunk(new, "invokeai_metadata"))
    found = read_metadata(new)
    assert (found.prompt, found.negative_prompt, found.generator) == (
        expected["positive_prompt"], expected["negative_prompt"], "InvokeAI",
    )  # fmt: skip
    assert found.settings["seed"] == expected["seed"] and found.settings["steps"] == 35
    sd_meta = json.loads(chunk(parsers / "InvokeAI" / "invokeai_sdmeta1.png", "sd-metadata"))
    for name in ("invokeai_sdmeta1.png", "invokeai_dream1.png"):
        found = read_metadata(parsers / "InvokeAI" / name)
        assert found.prompt and sd_meta["image"]["prompt"][0]["prompt"].startswith(found.prompt)
        assert found.negative_prompt == "rendering, glowing eyes, skinny"
        assert found.settings["seed"] == 2980747362
    novelai = parsers / "NovelAI" / "novelai1_cropped.png"
    found = read_metadata(novelai)
    assert found.generator == "NovelAI" and found.prompt == chunk(novelai, "Description").strip()
    assert found.negative_prompt == json.loads(chunk(novelai, "Comment"))["uc"]
    fooocus = parsers / "Fooocus" / "fooocus1_cropped.png"
    found = read_metadata(fooocus)
    expected = json.loads(chunk(fooocus, "parameters"))
    assert (found.generator, found.prompt) == ("Fooocus", expected["prompt"])
    assert found.settings["model"] == expected["base_model"]


def test_bad_files_are_reported_never_raised(sd_metadata, tmp_path):
    bad = sd_metadata / "bad_images"
    empty = read_metadata(bad / "empty_file.png")
    assert empty.prompt is None and "not an image" in empty.error
    for name in ("empty_image.png", "empty_image.jpg"):
        found = read_metadata(bad / name)
        assert (found.prompt, found.error) == (None, None), name
    late = read_metadata(bad / "text_after_idat.png")  # the text chunk follows the pixels
    assert late.prompt == "photo of a duck"
    assert read_metadata(tmp_path / "missing.png").error == "no such file"
    for name in write_odd_images(tmp_path / "odd", huge=None):
        found = read_metadata(tmp_path / "odd" / name)  # never raises, whatever the file
        assert found.prompt is None, name


@pytest.mark.parametrize("fmt,suffix", [("JPEG", "jpg"), ("WEBP", "webp")])
@pytest.mark.parametrize("charset", ["UNICODE-BE", "UNICODE-LE", "ASCII"])
def test_exif_user_comment_in_every_charset(tmp_path, fmt, suffix, charset):
    prompt = "a lighthouse at night, café lights" if charset != "ASCII" else "a lighthouse"
    path = with_user_comment(tmp_path / f"x.{suffix}", a1111_text(prompt), fmt, charset)
    found = read_metadata(path)
    assert (found.prompt, found.negative_prompt, found.generator) == (
        prompt, "blurry", "AUTOMATIC1111",
    )  # fmt: skip
    assert found.settings["steps"] == 20


@pytest.mark.parametrize(
    "variant", ["stealth_pnginfo", "stealth_pngcomp", "stealth_rgbinfo", "stealth_rgbcomp"]
)
def test_stealth_variants(tmp_path, variant):
    path = stealth(tmp_path / "s.png", a1111_text(f"a hidden fox, {variant}"), variant)
    found = read_metadata(path)
    assert found.prompt == f"a hidden fox, {variant}" and found.negative_prompt == "blurry"


def test_broken_stealth_payload_is_reported(tmp_path):
    text = "".join(chr(ord("a") + (i * 7919) % 26) for i in range(300))  # compresses poorly
    path = stealth(tmp_path / "s.png", text, "stealth_pngcomp")
    image = Image.open(path).convert("RGBA")
    pixels = image.load()
    for x in range(5, 7):  # flip the hidden bits in the middle of the gzip stream
        for y in range(96):
            r, g, b, a = pixels[x, y]
            pixels[x, y] = (r, g, b, a ^ 1)
    image.save(path)
    found = read_metadata(path)
    assert found.prompt is None and "stealth" in found.error


def test_comfyui_graphs_without_workflow_custom_samplers_and_links(tmp_path):
    found = read_metadata(comfy_png(tmp_path / "a.png", comfy_graph("a snowy owl, watercolor")))
    assert (found.prompt, found.negative_prompt) == ("a snowy owl, watercolor", "bad hands")
    assert found.settings["seed"] == 42 and found.settings["size"] == "512x768"
    assert found.settings["model"] == "sd15.safetensors"

    # Text from a primitive node, combined conditioning, a LoRA between model and sampler.
    graph = comfy_graph("unused")
    graph["10"] = {"class_type": "PrimitiveString", "inputs": {"value": "a red bicycle"}}
    graph["6"]["inputs"]["text"] = ["10", 0]
    graph["11"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "city street"}}
    graph["12"] = {
        "class_type": "ConditioningCombine",
        "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["11", 0]},
    }
    graph["13"] = {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "lora_name": "l"}}
    graph["3"]["inputs"].update(positive=["12", 0], model=["13", 0])
    found = read_metadata(comfy_png(tmp_path / "b.png", graph))
    assert found.prompt == "a red bicycle, city street"
    assert found.settings["model"] == "sd15.safetensors"

    # SamplerCustomAdvanced: the conditioning is on its guider.
    graph = comfy_graph("a paper boat")
    graph["3"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {"noise": ["20", 0], "guider": ["21", 0], "latent_image": ["5", 0]},
    }
    graph["21"] = {
        "class_type": "CFGGuider",
        "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 3.5},
    }
    found = read_metadata(comfy_png(tmp_path / "c.png", graph))
    assert (found.prompt, found.negative_prompt) == ("a paper boat", "bad hands")

    # A cycle in a hand-edited graph ends; a broken chunk is reported.
    graph = comfy_graph("loops")
    graph["6"]["inputs"]["clip"] = ["3", 0]
    assert read_metadata(comfy_png(tmp_path / "d.png", graph)).prompt == "loops"
    broken = read_metadata(png_with_text(tmp_path / "e.png", {"prompt": '{"3": {"inputs": '}))
    assert broken.prompt is None and "not a JSON object" in broken.error


def test_comfyui_workflow_only(sd_metadata, tmp_path):
    source = sd_metadata / "parsers" / "ComfyUI" / "img2img_cropped.png"
    path = png_with_text(tmp_path / "w.png", {"workflow": chunk(source, "workflow")})
    found = read_metadata(path)
    assert found.prompt == "photograph of victorian woman with wings, sky clouds, meadow grass"
    assert (found.settings["steps"], found.settings["sampler"]) == (20, "sample_dpmpp_2m")


def test_swarmui_and_a_text_without_a_settings_line(tmp_path):
    swarm = {"sui_image_params": {"prompt": "a koi pond", "negativeprompt": "ugly", "steps": 30}}
    found = read_metadata(png_with_text(tmp_path / "s.png", {"parameters": json.dumps(swarm)}))
    assert (found.generator, found.prompt, found.negative_prompt) == (
        "SwarmUI",
        "a koi pond",
        "ugly",
    )
    assert found.settings["steps"] == 30
    plain = png_with_text(tmp_path / "p.png", {"parameters": "a koi pond\nNegative prompt: ugly"})
    found = read_metadata(plain)
    assert (found.prompt, found.negative_prompt) == ("a koi pond", "ugly")


def test_hostile_metadata_is_capped_and_shown_as_text(tmp_path, monkeypatch):
    from img2prompt.app import report

    huge = "word " * (MAX_TEXT_CHARS // 2)
    found = read_metadata(png_with_text(tmp_path / "h.png", {"parameters": a1111_text(huge)}))
    assert len(found.prompt) == MAX_TEXT_CHARS and "cut at" in found.error
    nested = '{"a": ' * 100_000 + "1" + "}" * 100_000
    deep = read_metadata(png_with_text(tmp_path / "d.png", {"prompt": nested}))
    assert deep.prompt is None and deep.error
    markup = "[bold red]alarm[/] <script>alert(1)</script>"
    path = png_with_text(tmp_path / "m.png", {"parameters": a1111_text(markup)})
    monkeypatch.setattr(report.console, "width", 400)
    result = CliRunner().invoke(app, ["metadata", str(path)])
    assert result.exit_code == 0
    assert "[bold red]alarm[/] <script>alert(1)</script>" in result.stdout  # shown, not rendered


def test_metadata_command_json_lines_in_input_order(sd_metadata, tmp_path):
    a1111 = sd_metadata / "parsers" / "AUTOMATIC1111" / "automatic1111_cropped.png"
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    comfy = sd_metadata / "parsers" / "ComfyUI"
    result = CliRunner().invoke(app, ["metadata", str(plain), str(comfy), str(a1111), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(x["image"]).name for x in lines] == [
        "plain.png",
        *sorted(p.name for p in comfy.glob("*.png")),
        a1111.name,
    ]
    for line in lines:
        assert set(line) == {
            "image", "prompt", "negative_prompt", "generator", "settings", "error", "passes",
            "composed", "candidates", "note",
        }  # fmt: skip
    assert lines[0]["prompt"] is None and lines[-1]["prompt"] == "photo of a duck"
    missing = CliRunner().invoke(app, ["metadata", str(tmp_path / "nope.png"), "--json"])
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["error"] == "no such file or folder"


def test_comfyui_hostile_graphs_cost_linear_time():
    from img2prompt.metadata.comfyui import read_graph

    graph = comfy_graph("unused")
    graph["10"] = {"class_type": "Knot", "inputs": {f"in{i}": ["10", 0] for i in range(40)}}
    graph["6"]["inputs"]["text"] = ["10", 0]  # every input of "10" links back to itself
    assert read_graph(graph).prompt is None  # returned at once (it once took exponential time)
    chain = comfy_graph("the end of a long chain")
    for i in range(1500):  # 1,500 conditioning nodes in a row: no recursion limit
        chain[f"c{i}"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": ["6", 0]}}
        if i:
            chain[f"c{i}"]["inputs"]["conditioning"] = [f"c{i - 1}", 0]
    chain["3"]["inputs"]["positive"] = ["c1499", 0]
    assert read_graph(chain).prompt == "the end of a long chain"


def test_comfyui_follows_the_output_slot_and_prefers_the_saved_branch():
    from img2prompt.metadata.comfyui import read_graph

    graph = comfy_graph("a castle on a hill", "blurry, lowres")
    graph["20"] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {"positive": ["6", 0], "negative": ["7", 0], "control_net": ["21", 0]},
    }
    graph["3"]["inputs"].update(positive=["20", 0], negative=["20", 1])
    found = read_graph(graph)
    assert (found.prompt, found.negative) == ("a castle on a hill", "blurry, lowres")

    both = comfy_graph("the saved one")
    both["30"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a preview"}}
    both["31"] = dict(both["3"], inputs=dict(both["3"]["inputs"], positive=["30", 0]))
    both["32"] = {"class_type": "VAEDecode", "inputs": {"samples": ["31", 0]}}
    both["33"] = {"class_type": "PreviewImage", "inputs": {"images": ["32", 0]}}
    both["34"] = {"class_type": "ImageScale", "inputs": {"image": ["8", 0]}}
    both["9"]["inputs"]["images"] = ["34", 0]  # the saved branch is the longer one
    assert read_graph(both).prompt == "the saved one"


def test_workflow_widgets_of_ksampler_advanced(tmp_path):
    from img2prompt.metadata.comfy_workflow import workflow_to_graph

    workflow = {
        "nodes": [
            {
                "id": 1,
                "type": "KSamplerAdvanced",
                "widgets_values": ["enable", 7, "randomize", 30, 6.0, "euler", "karras", 0, 30,
                                   "disable"],
            }
        ],
        "links": [],
    }  # fmt: skip
    inputs = workflow_to_graph(workflow)["1"]["inputs"]
    assert (inputs["noise_seed"], inputs["steps"], inputs["cfg"]) == (7, 30, 6.0)
    assert inputs["sampler_name"] == "euler"


def test_text_that_is_no_prompt_is_not_taken_for_one(tmp_path):
    phone = with_user_comment(tmp_path / "phone.jpg", "Shot on my phone", "JPEG", "ASCII")
    assert read_metadata(phone).prompt is None
    stray = png_with_text(tmp_path / "j.png", {"parameters": '{"foo": "bar"}'})
    assert read_metadata(stray).prompt is None
    gimp = read_metadata(png_with_text(tmp_path / "g.png", {"Comment": "Created with GIMP"}))
    assert (gimp.prompt, gimp.generator, gimp.error) == (None, None, None)
    empty = png_with_text(tmp_path / "e.png", {"parameters": " \nNegative prompt: ugly\nSteps: 3"})
    assert read_metadata(empty).prompt is None  # an empty prompt is no prompt
    easy = {"prompt": "a koi pond", "negative_prompt": "ugly", "num_inference_steps": "25",
            "guidance_scale": "7.5", "seed": "9"}  # fmt: skip
    found = read_metadata(png_with_text(tmp_path / "ed.png", easy))
    assert (found.generator, found.prompt, found.negative_prompt) == (
        "Easy Diffusion", "a koi pond", "ugly",
    )  # fmt: skip
    assert (found.settings["steps"], found.settings["cfg_scale"]) == (25, 7.5)
    # Both a plain `prompt` and an A1111 `parameters` chunk: the A1111 text answers.
    both = png_with_text(tmp_path / "b.png", {"prompt": "x", "parameters": a1111_text("a cat")})
    assert read_metadata(both).prompt == "a cat"


def test_control_characters_nan_and_non_ascii_utf16(tmp_path):
    escape = "a \x1b[31mred\x1b[0m fox\x1b]0;PWNED\x07\x1b[2J in the \u202ewons\u202c"
    found = read_metadata(png_with_text(tmp_path / "x.png", {"parameters": a1111_text(escape)}))
    # Escape sequences go whole (no "[31m" debris), and so do bidirectional overrides.
    assert found.prompt == "a red fox in the wons"
    nan = a1111_text("a cat").replace("CFG scale: 7", "CFG scale: nan")
    found = read_metadata(png_with_text(tmp_path / "n.png", {"parameters": nan}))
    json.dumps(found.to_json(), allow_nan=False)  # valid JSON
    cjk = "猫の絵、青空\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1"
    for charset in ("UNICODE-BE", "UNICODE-LE"):
        path = with_user_comment(tmp_path / f"{charset}.jpg", cjk, "JPEG", charset)
        assert read_metadata(path).prompt == "猫の絵、青空", charset


def test_png_pixels_are_not_decoded_to_read_its_text(tmp_path, monkeypatch):
    from PIL import PngImagePlugin

    path = png_with_text(tmp_path / "a.png", {"parameters": a1111_text("a cat")})
    loads = []
    original = PngImagePlugin.PngImageFile.load
    monkeypatch.setattr(
        PngImagePlugin.PngImageFile, "load", lambda self: loads.append(1) or original(self)
    )
    assert read_metadata(path).prompt == "a cat" and loads == []


DRAW_THINGS_XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
    'syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
    "<xmp:CreatorTool>Draw Things</xmp:CreatorTool>{description}{comment}"
    "</rdf:Description></rdf:RDF></x:xmpmeta>"
)


def _draw_things_xmp(comment: dict | None, description: str | None = None) -> str:
    from html import escape

    parts = {"comment": "", "description": ""}
    if comment is not None:
        text = escape(json.dumps(comment))
        parts["comment"] = (
            f'<exif:UserComment><rdf:Alt><rdf:li xml:lang="x-default">{text}</rdf:li>'
            "</rdf:Alt></exif:UserComment>"
        )
    if description is not None:
        parts["description"] = (
            f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{escape(description)}'
            "</rdf:li></rdf:Alt></dc:description>"
        )
    return DRAW_THINGS_XMP.format(**parts)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_draw_things_xmp(tmp_path, fmt):
    """Draw Things writes XMP: a JSON UserComment (`c`, `uc`, settings), else an A1111-style
    description. Entities are decoded, and nothing in the packet is evaluated."""
    from PIL import PngImagePlugin

    comment = {"c": "a cat & a <dog>", "uc": "blurry", "seed": 6952411511246973023,
               "steps": 20, "scale": 7.5, "sampler": "DPM++ 2M Karras",
               "model": "sd_v1.5_f16.ckpt", "size": "512x512", "strength": 1}  # fmt: skip
    path = tmp_path / f"dt.{fmt.lower()}"
    xmp = _draw_things_xmp(comment)
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp)
        Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    else:
        Image.new("RGB", (8, 8)).save(path, fmt, xmp=xmp.encode())
    meta = read_metadata(path)
    assert meta.generator == "Draw Things" and meta.error is None
    assert meta.prompt == "a cat & a <dog>" and meta.negative_prompt == "blurry"
    assert meta.settings["seed"] == 6952411511246973023 and meta.settings["cfg_scale"] == 7.5
    assert meta.settings["sampler"] == "DPM++ 2M Karras" and meta.settings["size"] == "512x512"
    assert meta.settings["model"] == "sd_v1.5_f16.ckpt" and meta.settings["steps"] == 20

    text = "a red fox\nNegative prompt: cartoon\nSteps: 30, Sampler: Euler a, Seed: 5, Size: 64x64"
    old = tmp_path / "description.jpg"
    Image.new("RGB", (8, 8)).save(old, xmp=_draw_things_xmp(None, text).encode())
    meta = read_metadata(old)
    assert (meta.generator, meta.prompt, meta.negative_prompt) == (
        "Draw Things",
        "a red fox",
        "cartoon",
    )
    assert meta.settings["steps"] == 30

    entity_bomb = '<!DOCTYPE x [<!ENTITY a "aaaa">]>' + _draw_things_xmp(None, "&a;&a;")
    bomb = tmp_path / "bomb.jpg"
    Image.new("RGB", (8, 8)).save(bomb, xmp=entity_bomb.encode())
    assert read_metadata(bomb).prompt == "&a;&a;"  # shown as written, never expanded


def test_draw_things_xmp_of_unclosed_tags_reads_in_one_pass(tmp_path):
    """An upload whose XMP repeats an opening tag 40,000 times has no prompt and no error (its
    read time against a plain file's is measured by benchmarks/bench_metadata.py: a lazy
    `<tag>(.*?)</tag>` pattern took ~10 s on a quarter of this)."""
    from PIL import PngImagePlugin

    for tag in ("<exif:UserComment>", "<rdf:li>", "<dc:description>"):
        xmp = "<x:xmpmeta>Draw Things" + tag * 40_000 + "</x:xmpmeta>"
        path = tmp_path / "hostile.png"
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp)
        Image.new("RGB", (8, 8)).save(path, pnginfo=info)
        found = read_metadata(path)
        assert found.prompt is None and found.error is None
