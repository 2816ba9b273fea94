"""ComfyUI graphs as people build them, one test a node shape: multi-pass graphs (the base pass
answers, every pass listed), guiders, pipes, group nodes and subgraphs, zero-out, combined
conditioning, string chains, run-time text (never a prompt), and the places ComfyUI writes
its graphs (PNG chunks, WebP EXIF, GIF comments, video headers)."""

from __future__ import annotations

import json

from PIL import Image

from img2prompt.metadata import read_metadata
from img2prompt.metadata.comfy_workflow import workflow_to_graph
from img2prompt.metadata.comfyui import read_graph
from sd_files import comfy_graph, comfy_png, comfy_webp, comfy_workflow, picture, wf_node


def encoder(text, clip=("4", 1)) -> dict:
    return {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": list(clip)}}


def ksampler(positive, negative, latent, *, denoise=1.0, model=("4", 0), seed=7) -> dict:
    return {
        "class_type": "KSampler",
        "inputs": {
            "seed": seed, "steps": 20, "cfg": 7.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": denoise, "model": list(model),
            "positive": list(positive), "negative": list(negative), "latent_image": list(latent),
        },
    }  # fmt: skip


def with_hires(graph: dict, prompt: str) -> dict:
    """A second KSampler on the upscaled latent of the first, with its own prompt."""
    graph["20"] = {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "scale_by": 2}}
    graph["21"] = encoder(prompt)
    graph["22"] = ksampler(("21", 0), ("7", 0), ("20", 0), denoise=0.45, seed=8)
    graph["8"]["inputs"]["samples"] = ["22", 0]
    return graph


def test_base_and_hires_pass():
    found = read_graph(with_hires(comfy_graph("a lighthouse at dusk"), "sharp details, 8k"))
    assert (found.prompt, found.negative) == ("a lighthouse at dusk", "bad hands")
    assert [(p.role, p.positive, p.node) for p in found.passes] == [
        ("base", "a lighthouse at dusk", "3"),
        ("hires", "sharp details, 8k", "22"),
    ]
    assert found.settings["seed"] == 42 and found.passes[1].settings["seed"] == 8
    assert found.passes[1].settings["denoise"] == 0.45


def test_base_and_sdxl_refiner():
    graph = comfy_graph("a red fox in snow")
    graph["3"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {"add_noise": "enable", "noise_seed": 1, "steps": 25, "cfg": 7,
                   "sampler_name": "euler", "scheduler": "normal", "start_at_step": 0,
                   "end_at_step": 20, "return_with_leftover_noise": "enable",
                   "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                   "latent_image": ["5", 0]},
    }  # fmt: skip
    graph["30"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "refiner.st"}}
    graph["31"] = {
        "class_type": "CLIPTextEncodeSDXLRefiner",
        "inputs": {"ascore": 6, "width": 1024, "height": 1024, "text": "rewritten by refiner",
                   "clip": ["30", 1]},
    }  # fmt: skip
    graph["32"] = dict(graph["3"], inputs=dict(graph["3"]["inputs"], add_noise="disable",
                       start_at_step=20, end_at_step=10000, model=["30", 0],
                       positive=["31", 0], latent_image=["3", 0]))  # fmt: skip
    graph["8"]["inputs"]["samples"] = ["32", 0]
    found = read_graph(graph)
    assert found.prompt == "a red fox in snow"
    assert [p.role for p in found.passes] == ["base", "refiner"]
    assert found.passes[1].positive == "rewritten by refiner"
    assert found.passes[1].settings["model"] == "refiner.st"


def test_face_detailer_is_a_later_pass_not_the_prompt():
    graph = comfy_graph("a girl on a beach at sunset, wide shot")
    graph["40"] = encoder("adorable face, joyful, closeup portrait")
    graph["41"] = {
        "class_type": "FaceDetailer",
        "inputs": {"image": ["8", 0], "model": ["4", 0], "clip": ["4", 1], "vae": ["4", 2],
                   "positive": ["40", 0], "negative": ["7", 0], "seed": 3, "steps": 20,
                   "cfg": 8, "sampler_name": "euler", "scheduler": "normal", "denoise": 0.5,
                   "guide_size": 384, "bbox_detector": ["42", 0]},
    }  # fmt: skip
    graph["9"]["inputs"]["images"] = ["41", 0]
    found = read_graph(graph)
    assert found.prompt == "a girl on a beach at sunset, wide shot"
    assert [(p.role, p.positive) for p in found.passes] == [
        ("base", "a girl on a beach at sunset, wide shot"),
        ("detailer", "adorable face, joyful, closeup portrait"),
    ]


def custom_advanced(graph: dict, guider: dict) -> dict:
    """SamplerCustomAdvanced with noise, sampler and sigmas nodes, and `guider` as node 21."""
    graph["3"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {"noise": ["20", 0], "guider": ["21", 0], "sampler": ["22", 0],
                   "sigmas": ["23", 0], "latent_image": ["5", 0]},
    }  # fmt: skip
    graph["20"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 99}}
    graph["21"] = guider
    graph["22"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    graph["23"] = {
        "class_type": "BasicScheduler",
        "inputs": {"scheduler": "simple", "steps": 28, "denoise": 1.0, "model": ["4", 0]},
    }
    return graph


def test_guiders_of_sampler_custom_advanced():
    cfg = {
        "class_type": "CFGGuider",
        "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 4.5},
    }
    found = read_graph(custom_advanced(comfy_graph("a paper boat"), cfg))
    assert (found.prompt, found.negative) == ("a paper boat", "bad hands")
    assert (found.settings["noise_seed"], found.settings["steps"]) == (99, 28)
    assert (found.settings["cfg"], found.settings["sampler_name"]) == (4.5, "euler")

    graph = comfy_graph("a flux portrait")
    graph["24"] = {
        "class_type": "FluxGuidance",
        "inputs": {"conditioning": ["6", 0], "guidance": 3.5},
    }
    basic = {"class_type": "BasicGuider", "inputs": {"model": ["4", 0], "conditioning": ["24", 0]}}
    found = read_graph(custom_advanced(graph, basic))
    assert (found.prompt, found.negative) == ("a flux portrait", None)

    graph = comfy_graph("turn it into winter")
    graph["25"] = encoder("")
    dual = {
        "class_type": "DualCFGGuider",
        "inputs": {
            "model": ["4", 0],
            "cond1": ["6", 0],
            "cond2": ["25", 0],
            "negative": ["7", 0],
            "cfg_conds": 5.0,
            "cfg_cond2_negative": 2.0,
        },
    }
    found = read_metadata(comfy_png(_tmp() / "dual.png", custom_advanced(graph, dual)))
    assert (found.prompt, found.negative_prompt) == ("turn it into winter", "bad hands")
    assert found.settings["cfg_scale"] == 5.0 and found.settings["seed"] == 99


def _tmp():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp())


def test_pipes_and_component_nodes():
    graph = comfy_graph("a knight in a misty forest")
    graph["50"] = {
        "class_type": "ToBasicPipe",
        "inputs": {"model": ["4", 0], "clip": ["4", 1], "vae": ["4", 2],
                   "positive": ["6", 0], "negative": ["7", 0]},
    }  # fmt: skip
    graph["51"] = {"class_type": "FromBasicPipe_v2", "inputs": {"basic_pipe": ["50", 0]}}
    graph["3"]["inputs"].update(positive=["51", 4], negative=["51", 5], model=["51", 1])
    found = read_graph(graph)
    assert (found.prompt, found.negative) == ("a knight in a misty forest", "bad hands")
    assert found.settings["model"] == "sd15.safetensors"

    # A component node ("## name") packs the texts into a basic_pipe for a pipe detailer.
    graph["60"] = {
        "class_type": "## prompt-pipe",
        "inputs": {"model": ["4", 0], "clip": ["4", 1], "vae": ["4", 2],
                   "positive": ["61", 0], "negative": ["7", 0]},
    }  # fmt: skip
    graph["61"] = encoder("detailed armour, face")
    graph["62"] = {
        "class_type": "DetailerForEachPipe",
        "inputs": {"image": ["8", 0], "segs": ["63", 0], "basic_pipe": ["60", 0], "seed": 1,
                   "steps": 20, "cfg": 7, "denoise": 0.4},
    }  # fmt: skip
    graph["9"]["inputs"]["images"] = ["62", 0]
    found = read_graph(graph)
    assert found.prompt == "a knight in a misty forest"
    assert [(p.role, p.positive) for p in found.passes][-1] == ("detailer", "detailed armour, face")

    # The base sampler reads its pipe itself (ImpactKSamplerBasicPipe).
    graph["3"] = {
        "class_type": "ImpactKSamplerBasicPipe",
        "inputs": {"basic_pipe": ["60", 0], "seed": 5, "steps": 20, "cfg": 7,
                   "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
                   "latent_image": ["5", 0]},
    }  # fmt: skip
    assert read_graph(graph).prompt == "detailed armour, face"


def test_zero_out_negative_is_empty_not_the_positive():
    graph = comfy_graph("a cozy cabin, sd3 style")
    graph["70"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}}
    graph["3"]["inputs"]["negative"] = ["70", 0]
    found = read_graph(graph)
    assert (found.prompt, found.negative) == ("a cozy cabin, sd3 style", None)


def test_combined_and_area_conditioning_is_composed_in_order():
    graph = comfy_graph("a mountain lake")
    graph["80"] = encoder("northern lights")
    graph["81"] = {"class_type": "ConditioningSetArea",
                   "inputs": {"conditioning": ["80", 0], "width": 512, "height": 256, "x": 0,
                              "y": 0, "strength": 1.0}}  # fmt: skip
    graph["82"] = {
        "class_type": "ConditioningConcat",
        "inputs": {"conditioning_to": ["6", 0], "conditioning_from": ["81", 0]},
    }
    graph["3"]["inputs"]["positive"] = ["82", 0]
    found = read_graph(graph)
    assert found.prompt == "a mountain lake, northern lights" and found.composed
    assert read_graph(comfy_graph("one text")).composed is False


def test_string_chains_of_literals_are_built_as_the_node_builds_them():
    graph = comfy_graph("unused")
    graph["90"] = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a white cat"}}
    graph["91"] = {
        "class_type": "StringConcatenate",
        "inputs": {"string_a": ["90", 0], "string_b": "on a red sofa", "delimiter": " "},
    }
    graph["92"] = {
        "class_type": "SDXLPromptStyler",
        "inputs": {"text_positive": ["91", 0], "text_negative": "", "style": "base"},
    }
    graph["6"]["inputs"]["text"] = ["92", 0]
    assert read_graph(graph).prompt == "a white cat on a red sofa"
    graph["92"]["inputs"]["style"] = "sai-cinematic"  # its template is not known here
    found = read_graph(graph)
    assert found.prompt is None and "SDXLPromptStyler" in found.note
    assert found.candidates == ["a white cat on a red sofa"]


def test_wildcards_and_llm_text_are_never_a_prompt():
    graph = comfy_graph("unused")
    graph["93"] = {"class_type": "ImpactWildcardProcessor",
                   "inputs": {"wildcard_text": "a __animal__ in a {red|blue} hat",
                              "populated_text": "", "mode": "populate", "seed": 4}}  # fmt: skip
    graph["6"]["inputs"]["text"] = ["93", 0]
    found = read_metadata(comfy_png(_tmp() / "w.png", graph))
    assert found.prompt is None and found.generator == "ComfyUI"
    assert "ImpactWildcardProcessor (node 93)" in found.note
    assert found.candidates == ["a __animal__ in a {red|blue} hat"]
    assert found.passes[0].role == "base" and found.passes[0].positive is None
    assert found.negative_prompt == "bad hands"  # the negative is literal


def test_a_wildcard_text_the_graph_stores_expanded_is_the_prompt(tmp_path):
    """Impact Pack writes the expanded text into `populated_text` before the graph runs and
    the node outputs exactly it: stored, so read (empty, it stays null: the test above)."""
    graph = comfy_graph("unused")
    graph["93"] = {
        "class_type": "ImpactWildcardProcessor",
        "inputs": {
            "wildcard_text": "a __animal__ in a {red|blue} hat",
            "populated_text": "a fox in a red hat",
            "mode": "populate",
            "seed": 4,
        },
    }
    graph["6"]["inputs"]["text"] = ["93", 0]
    found = read_metadata(comfy_png(tmp_path / "w.png", graph))
    assert (found.prompt, found.note, found.candidates) == ("a fox in a red hat", None, [])
    encode = comfy_graph("unused")
    encode["6"] = {
        "class_type": "ImpactWildcardEncode",
        "inputs": {
            "wildcard_text": "__style__ castle",
            "populated_text": "gothic castle",
            "mode": "populate",
            "model": ["4", 0],
            "clip": ["4", 1],
            "seed": 1,
        },
    }
    assert read_metadata(comfy_png(tmp_path / "e.png", encode)).prompt == "gothic castle"


def test_a_prompt_reader_node_file_name_is_never_a_prompt(tmp_path):
    graph = comfy_graph("unused", "unused")
    graph["1"] = {"class_type": "SDPromptReader",
                  "inputs": {"image": "00067-2302238556.png", "parameter_index": 0}}  # fmt: skip
    graph["6"]["inputs"]["text"] = ["1", 2]
    graph["7"]["inputs"]["text"] = ["1", 3]
    found = read_metadata(comfy_png(tmp_path / "r.png", graph))
    assert (found.prompt, found.negative_prompt, found.candidates) == (None, None, [])
    assert "SDPromptReader (node 1)" in found.note

    # The editor graph: the reader's widgets show the text it read last, a candidate only.
    workflow = comfy_workflow(
        [
            wf_node(1, "SDPromptReader", ["00067-2302238556.png", "image", 0, "a shown prompt",
                                          "a shown negative", "Steps: 20"],
                    outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK"), ("POSITIVE", "STRING"),
                             ("NEGATIVE", "STRING")]),
            wf_node(6, "CLIPTextEncode", [""], inputs=[("text", "STRING", 1)]),
            wf_node(7, "CLIPTextEncode", [""], inputs=[("text", "STRING", 2)]),
            wf_node(5, "EmptyLatentImage", [512, 512, 1]),
            wf_node(3, "KSampler", [1, "randomize", 20, 7, "euler", "normal", 1.0],
                    inputs=[("positive", "CONDITIONING", 3), ("negative", "CONDITIONING", 4),
                            ("latent_image", "LATENT", 5)]),
        ],
        [[1, 1, 2, 6, 0, "STRING"], [2, 1, 3, 7, 0, "STRING"], [3, 6, 0, 3, 0, "CONDITIONING"],
         [4, 7, 0, 3, 1, "CONDITIONING"], [5, 5, 0, 3, 2, "LATENT"]],
    )  # fmt: skip
    path = tmp_path / "w.png"
    from sd_files import png_with_text

    found = read_metadata(png_with_text(path, {"workflow": json.dumps(workflow)}))
    assert (found.prompt, found.negative_prompt) == (None, None)
    assert found.candidates == ["a shown prompt"]


def test_group_node_ids_and_editor_group_nodes_and_subgraphs():
    graph = comfy_graph("inside a group")
    graph["12:3"] = graph.pop("3")  # group nodes come expanded in the executed graph
    graph["8"]["inputs"]["samples"] = ["12:3", 0]
    found = read_graph(graph)
    assert found.prompt == "inside a group" and found.passes[0].node == "12:3"

    # The editor's group node: a KSampler and an empty latent inside "workflow>sampler".
    group = {
        "nodes": [
            {
                "type": "EmptyLatentImage",
                "index": 0,
                "widgets_values": [512, 512, 1],
                "outputs": [{"name": "LATENT", "type": "LATENT"}],
            },
            {
                "type": "KSampler",
                "index": 1,
                "widgets_values": [0, "fixed", 20, 7, "euler", "normal", 1],
                "inputs": [
                    {"name": "model", "type": "MODEL", "link": None},
                    {"name": "positive", "type": "CONDITIONING", "link": None},
                    {"name": "negative", "type": "CONDITIONING", "link": None},
                    {"name": "latent_image", "type": "LATENT", "link": None},
                ],
                "outputs": [{"name": "LATENT", "type": "LATENT"}],
            },
        ],
        "links": [[0, 0, 1, 3, 5, "LATENT"]],
        "external": [],
    }
    workflow = comfy_workflow(
        [
            wf_node(4, "CheckpointLoaderSimple", ["model.safetensors"],
                    outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
            wf_node(6, "CLIPTextEncode", ["a group's prompt"], inputs=[("clip", "CLIP", 2)]),
            wf_node(7, "CLIPTextEncode", ["ugly"], inputs=[("clip", "CLIP", 3)]),
            wf_node(10, "workflow>sampler", [512, 512, 1, 11, "fixed", 30, 6, "euler", "karras", 1],
                    inputs=[("model", "MODEL", 1), ("positive", "CONDITIONING", 4),
                            ("negative", "CONDITIONING", 5)],
                    outputs=[("LATENT", "LATENT")]),
            wf_node(8, "VAEDecode", inputs=[("samples", "LATENT", 6)]),
        ],
        [[1, 4, 0, 10, 0, "MODEL"], [2, 4, 1, 6, 0, "CLIP"], [3, 4, 1, 7, 0, "CLIP"],
         [4, 6, 0, 10, 1, "CONDITIONING"], [5, 7, 0, 10, 2, "CONDITIONING"],
         [6, 10, 0, 8, 0, "LATENT"]],
        extra={"groupNodes": {"sampler": group}},
    )  # fmt: skip
    found = read_graph(workflow_to_graph(workflow))
    assert (found.prompt, found.negative) == ("a group's prompt", "ugly")
    assert found.settings["seed"] == 11 and found.settings["steps"] == 30
    assert found.settings["model"] == "model.safetensors" and found.settings["size"] == "512x512"

    # A subgraph: the text encoder lives inside it, fed by the outer checkpoint's clip.
    subgraph = {
        "id": "5f1c-uuid",
        "nodes": [
            wf_node(
                1,
                "CLIPTextEncode",
                ["from inside a subgraph"],
                inputs=[("clip", "CLIP", 11)],
                outputs=[("CONDITIONING", "CONDITIONING")],
            )
        ],
        "links": [
            {"id": 11, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0},
            {"id": 12, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0},
        ],
    }
    nodes = workflow["nodes"]
    nodes[1] = wf_node(6, "5f1c-uuid", inputs=[("clip", "CLIP", 2)],
                       outputs=[("CONDITIONING", "CONDITIONING")])  # fmt: skip
    workflow["definitions"] = {"subgraphs": [subgraph]}
    assert read_graph(workflow_to_graph(workflow)).prompt == "from inside a subgraph"


def test_editor_graph_reroutes_bypass_mute_and_primitives():
    workflow = comfy_workflow(
        [
            wf_node(2, "PrimitiveNode", ["a primitive's text"], outputs=[("STRING", "STRING")]),
            wf_node(6, "CLIPTextEncode", ["stale widget"], inputs=[("text", "STRING", 1)]),
            wf_node(20, "Reroute", inputs=[("", "*", 2)], outputs=[("", "*")]),
            wf_node(21, "ConditioningZeroOut", inputs=[("conditioning", "CONDITIONING", 3)],
                    outputs=[("CONDITIONING", "CONDITIONING")], mode=4),  # bypassed
            wf_node(22, "CLIPTextEncode", ["muted text"], mode=2),
            wf_node(5, "EmptyLatentImage", [640, 384, 1]),
            wf_node(3, "KSampler", [5, "randomize", 20, 7, "euler", "normal", 1.0],
                    inputs=[("positive", "CONDITIONING", 4), ("negative", "CONDITIONING", 6),
                            ("latent_image", "LATENT", 5)]),
        ],
        [[1, 2, 0, 6, 0, "STRING"], [2, 6, 0, 20, 0, "CONDITIONING"],
         [3, 20, 0, 21, 0, "CONDITIONING"], [4, 21, 0, 3, 0, "CONDITIONING"],
         [5, 5, 0, 3, 2, "LATENT"], [6, 22, 0, 3, 1, "CONDITIONING"]],
    )  # fmt: skip
    found = read_graph(workflow_to_graph(workflow))
    assert (found.prompt, found.negative) == ("a primitive's text", None)
    assert found.settings["size"] == "640x384" and found.settings["seed"] == 5


def test_hostile_graphs_end():
    cyclic = comfy_graph("cycle")
    cyclic["3"]["inputs"]["latent_image"] = ["3", 0]  # the sampler feeds itself
    cyclic["6"]["inputs"]["text"] = ["6", 0]
    found = read_graph(cyclic)
    assert found.prompt is None and found.passes
    loop = {"id": "x", "nodes": [{"id": 1, "type": "x"}], "links": []}
    workflow = comfy_workflow([{"id": 1, "type": "x"}], [], definitions={"subgraphs": [loop]})
    assert isinstance(workflow_to_graph(workflow), dict)  # a subgraph that holds itself ends
    many = {str(i): {"class_type": "KSampler", "inputs": {"positive": [str(i - 1), 0],
            "latent_image": [str(i - 1), 0], "seed": i}} for i in range(1, 3000)}  # fmt: skip
    assert len(read_graph(many).passes) <= 64


def test_animated_webp_exif_gif_comment_and_video_headers(tmp_path):
    graph = comfy_graph("a fox running through snow, tracking shot")
    found = read_metadata(comfy_webp(tmp_path / "v.webp", graph, {"nodes": [], "links": []}))
    assert (found.generator, found.prompt) == (
        "ComfyUI",
        "a fox running through snow, tracking shot",
    )

    gif = tmp_path / "v.gif"
    frames = [picture(seed=i).convert("P") for i in range(2)]
    comment = json.dumps({"prompt": graph, "workflow": {"nodes": [], "links": []}})
    frames[0].save(gif, save_all=True, append_images=frames[1:], comment=comment.encode())
    assert read_metadata(gif).prompt == "a fox running through snow, tracking shot"

    # MP4 (VideoHelperSuite's comment tag) and WebM, the header at either end of the file.
    mp4 = b"\0\0\0\x18ftypisom" + b"\0" * 64 + b"\xa9cmt" + comment.encode() + b"\0" * 32
    (tmp_path / "v.mp4").write_bytes(mp4)
    assert read_metadata(tmp_path / "v.mp4").prompt == "a fox running through snow, tracking shot"
    webm = b"\x1a\x45\xdf\xa3" + b"\x01" * 5_000_000 + b'{"prompt": ' + json.dumps(graph).encode()
    (tmp_path / "v.webm").write_bytes(webm + b"}")
    assert read_metadata(webm + b"}").prompt == "a fox running through snow, tracking shot"
    noise = b"\0\0\0\x18ftypisom" + b'{"3": {' * 50_000
    found = read_metadata(noise, "noise.mp4")
    assert found.prompt is None and "not an image" in found.error

    apng = tmp_path / "a.png"
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph))
    frames = [picture(seed=i) for i in range(2)]
    frames[0].save(apng, save_all=True, append_images=frames[1:], pnginfo=info)
    assert read_metadata(apng).prompt == "a fox running through snow, tracking shot"
    assert Image.open(apng).n_frames == 2


def test_styler_negative_output_and_lora_tag_loader_text():
    # A styler's slot 1 is its negative (the template's negative joined to `text_negative`),
    # never the positive; LoraTagLoader's STRING output is the text without its lora tags.
    graph = comfy_graph("unused")
    graph["30"] = {
        "class_type": "SDXLPromptStyler",
        "inputs": {
            "text_positive": "<lora:ink:0.7> an ink sketch of a heron",
            "text_negative": "smudges",
            "style": "base",
            "log_prompt": "No",
        },
    }
    graph["31"] = {
        "class_type": "LoraTagLoader",
        "inputs": {"text": ["30", 0], "model": ["4", 0], "clip": ["4", 1]},
    }
    graph["6"]["inputs"]["text"] = ["31", 2]
    graph["7"]["inputs"]["text"] = ["30", 1]
    found = read_graph(graph)
    assert (found.prompt, found.negative) == ("an ink sketch of a heron", "smudges")

    graph["30"]["inputs"]["style"] = "sai-origami"  # a template not known here: no prompt
    found = read_graph(graph)
    assert (found.prompt, found.negative) == (None, None)
    assert "with style 'sai-origami'" in found.note


def efficiency_graph(loader: dict, sampler: dict) -> dict:
    return {
        "1": loader,
        "2": sampler,
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 5], "filename_prefix": "x"}},
    }


def test_loaders_that_encode_their_own_text():
    # Efficiency nodes: the prompt is typed into the loader, which outputs the conditioning.
    texts = {"positive": "a glass greenhouse at night", "negative": "lowres"}
    loader = {"class_type": "Efficient Loader", "inputs": {"ckpt_name": "a.safetensors", **texts}}
    sampler = ksampler(("1", 1), ("1", 2), ("1", 3), model=("1", 0))
    sampler["class_type"] = "KSampler (Efficient)"
    found = read_graph(efficiency_graph(loader, sampler))
    assert (found.prompt, found.negative) == ("a glass greenhouse at night", "lowres")
    assert found.settings["model"] == "a.safetensors"

    # The SDXL loader hands its texts on only inside its tuple.
    loader = {
        "class_type": "Eff. Loader SDXL",
        "inputs": {"base_ckpt_name": "xl.safetensors", **texts},
    }
    sampler = {
        "class_type": "KSampler SDXL (Eff.)",
        "inputs": {
            "noise_seed": 3,
            "steps": 20,
            "cfg": 7,
            "start_at_step": 0,
            "sdxl_tuple": ["1", 0],
            "latent_image": ["1", 1],
        },
    }
    found = read_graph(efficiency_graph(loader, sampler))
    assert (found.prompt, found.negative) == ("a glass greenhouse at night", "lowres")
    assert found.settings["model"] == "xl.safetensors"

    # Easy-Use: the loader packs its texts into a pipe; the sampler reads the pipe.
    loader = {"class_type": "easy fullLoader", "inputs": {"ckpt_name": "e.safetensors", **texts}}
    sampler = {"class_type": "easy kSampler", "inputs": {"pipe": ["1", 0], "image_output": "Save"}}
    found = read_graph(efficiency_graph(loader, sampler))
    assert (found.prompt, found.negative) == ("a glass greenhouse at night", "lowres")

    # A loader's text made at run time is no prompt.
    loader["inputs"]["positive"] = ["9", 0]
    graph = efficiency_graph(loader, sampler)
    graph["9"] = {"class_type": "DPRandomGenerator", "inputs": {"text": "a {red|blue} door"}}
    found = read_graph(graph)
    assert found.prompt is None and "DPRandomGenerator (node 9)" in found.note
    assert found.negative == "lowres"


def test_unpacked_sdxl_tuple_gives_each_slot_its_own_text():
    graph = comfy_graph("unused")
    graph["20"] = {
        "class_type": "Pack SDXL Tuple",
        "inputs": {
            "base_model": ["4", 0],
            "base_clip": ["4", 1],
            "base_positive": ["6", 0],
            "base_negative": ["7", 0],
        },
    }
    graph["21"] = {"class_type": "Unpack SDXL Tuple", "inputs": {"sdxl_tuple": ["20", 0]}}
    graph["6"]["inputs"]["text"] = "a quiet harbour"
    graph["3"]["inputs"].update(positive=["21", 2], negative=["21", 3])
    found = read_graph(graph)
    assert (found.prompt, found.negative) == ("a quiet harbour", "bad hands")


def test_wan_video_wrapper_text_embeds_carry_both_texts():
    graph = {
        "1": {"class_type": "WanVideoModelLoader", "inputs": {"model": "wan.safetensors"}},
        "2": {
            "class_type": "WanVideoTextEncode",
            "inputs": {
                "positive_prompt": "waves rolling onto a beach",
                "negative_prompt": "static",
                "t5": ["5", 0],
            },
        },
        "3": {
            "class_type": "WanVideoSampler",
            "inputs": {
                "model": ["1", 0],
                "text_embeds": ["2", 0],
                "image_embeds": ["6", 0],
                "steps": 30,
                "cfg": 6,
                "seed": 5,
                "denoise_strength": 1.0,
            },
        },
        "5": {
            "class_type": "LoadWanVideoT5TextEncoder",
            "inputs": {"model_name": "umt5.safetensors"},
        },
        "6": {"class_type": "WanVideoEmptyEmbeds", "inputs": {"width": 832, "height": 480}},
        "7": {"class_type": "WanVideoDecode", "inputs": {"samples": ["3", 0]}},
    }
    found = read_graph(graph)
    assert (found.prompt, found.negative) == ("waves rolling onto a beach", "static")
    assert [p.role for p in found.passes] == ["base"]


def test_subgraph_widget_promoted_to_the_subgraph_node_wins_over_the_inner_value():
    # The new front end keeps a promoted prompt on the subgraph node (`proxyWidgets`); the inner
    # text encoder's own widget value is stale.
    inner = [
        wf_node(
            1,
            "CLIPTextEncode",
            ["an old prompt"],
            outputs=[("CONDITIONING", "CONDITIONING")],
            inputs=[("clip", "CLIP", 11), ("text", "STRING", 13)],
        ),
        wf_node(
            2,
            "CLIPTextEncode",
            ["murky"],
            inputs=[("clip", "CLIP", 12)],
            outputs=[("CONDITIONING", "CONDITIONING")],
        ),
        wf_node(3, "EmptyLatentImage", [512, 512, 1], outputs=[("LATENT", "LATENT")]),
        wf_node(
            4,
            "KSampler",
            [9, "randomize", 20, 7, "euler", "normal", 1],
            inputs=[
                ("model", "MODEL", 14),
                ("positive", "CONDITIONING", 15),
                ("negative", "CONDITIONING", 16),
                ("latent_image", "LATENT", 17),
            ],
            outputs=[("LATENT", "LATENT")],
        ),
    ]
    inner[0]["inputs"][1]["widget"] = {"name": "text"}

    def link(link_id, origin, origin_slot, target, target_slot):
        return {
            "id": link_id,
            "origin_id": origin,
            "origin_slot": origin_slot,
            "target_id": target,
            "target_slot": target_slot,
        }

    subgraph = {
        "id": "sub-uuid",
        "inputs": [{"name": n} for n in ("model", "clip", "text")],
        "nodes": inner,
        "links": [
            link(11, -10, 1, 1, 0),
            link(12, -10, 1, 2, 0),
            link(13, -10, 2, 1, 1),
            link(14, -10, 0, 4, 0),
            link(15, 1, 0, 4, 1),
            link(16, 2, 0, 4, 2),
            link(17, 3, 0, 4, 3),
            link(18, 4, 0, -20, 0),
        ],
    }
    outer = wf_node(
        10,
        "sub-uuid",
        ["the prompt typed on the subgraph node"],
        inputs=[("model", "MODEL", 1), ("clip", "CLIP", 2)],
        outputs=[("LATENT", "LATENT")],
    )
    outer["properties"] = {"proxyWidgets": [["-1", "text"]]}
    workflow = comfy_workflow(
        [
            wf_node(
                5,
                "CheckpointLoaderSimple",
                ["m.safetensors"],
                outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
            ),
            outer,
            wf_node(8, "VAEDecode", inputs=[("samples", "LATENT", 3)]),
        ],
        [[1, 5, 0, 10, 0, "MODEL"], [2, 5, 1, 10, 1, "CLIP"], [3, 10, 0, 8, 0, "LATENT"]],
        definitions={"subgraphs": [subgraph]},
    )
    found = read_graph(workflow_to_graph(workflow))
    assert (found.prompt, found.negative) == ("the prompt typed on the subgraph node", "murky")

    # Older files list the promoted widget as a widget input of the subgraph node.
    del outer["properties"]
    outer["inputs"].append(
        {"name": "text", "type": "STRING", "link": None, "widget": {"name": "text"}}
    )
    found = read_graph(workflow_to_graph(workflow))
    assert found.prompt == "the prompt typed on the subgraph node"


def test_efficient_ksampler_hands_its_texts_on_at_slots_1_and_2():
    # A second KSampler (Efficient) fed by the first one's outputs (model, positive, negative,
    # latent...): slot 1 is the positive, slot 2 the negative, never swapped.
    texts = {"positive": "a paper boat on a puddle", "negative": "grainy"}
    loader = {"class_type": "Efficient Loader", "inputs": {"ckpt_name": "a.safetensors", **texts}}
    first = ksampler(("1", 1), ("1", 2), ("1", 3), model=("1", 0))
    second = ksampler(("2", 1), ("2", 2), ("2", 3), model=("2", 0), denoise=0.4)
    first["class_type"] = second["class_type"] = "KSampler (Efficient)"
    graph = efficiency_graph(loader, first)
    graph["4"] = second
    graph["3"]["inputs"]["images"] = ["4", 5]
    found = read_graph(graph)
    assert [(p.role, p.positive, p.negative) for p in found.passes] == [
        ("base", "a paper boat on a puddle", "grainy"),
        ("refiner", "a paper boat on a puddle", "grainy"),
    ]


def test_instantid_hands_on_positive_at_1_and_negative_at_2():
    # ApplyInstantID outputs (MODEL, positive, negative); a ControlNet after it reads slots 1
    # and 2 (a real InstantID API graph): the prompt is never the negative.
    graph = comfy_graph("1 girl, 1 panda, bamboo in background", "extra arm, lowres")
    graph["60"] = {
        "class_type": "ApplyInstantID",
        "inputs": {
            "weight": 0.6,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "image": ["5", 0],
        },
    }
    graph["91"] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {"strength": 0.7, "positive": ["60", 1], "negative": ["60", 2]},
    }
    graph["3"]["inputs"].update(model=["60", 0], positive=["91", 0], negative=["91", 1])
    found = read_graph(graph)
    assert (found.prompt, found.negative) == (
        "1 girl, 1 panda, bamboo in background",
        "extra arm, lowres",
    )


def test_cr_apply_multi_controlnet_base_positive_and_negative():
    graph = comfy_graph("cinematic shot downtown at sunset", "cartoon, blurry")
    graph["22"] = {
        "class_type": "CR Apply Multi-ControlNet",
        "inputs": {
            "switch": "On",
            "base_positive": ["6", 0],
            "base_negative": ["7", 0],
            "controlnet_stack": ["20", 0],
        },
    }
    graph["20"] = {"class_type": "CR Multi-ControlNet Stack", "inputs": {"switch_1": "On"}}
    graph["3"]["inputs"].update(positive=["22", 0], negative=["22", 1])
    found = read_graph(graph)
    assert (found.prompt, found.negative) == (
        "cinematic shot downtown at sunset",
        "cartoon, blurry",
    )


def test_regional_sampler_reads_its_base_sampler_pipe():
    # Impact's RegionalSampler: the base prompt is its base_sampler's (a KSamplerAdvancedProvider
    # over a basic pipe); the regional prompts are not the prompt, and the sampler is found.
    graph = comfy_graph("1girl and 1man sitting in the cafe", "lowres")
    del graph["3"]
    graph["10"] = {
        "class_type": "ToBasicPipe",
        "inputs": {
            "model": ["4", 0],
            "clip": ["4", 1],
            "vae": ["4", 2],
            "positive": ["6", 0],
            "negative": ["7", 0],
        },
    }
    graph["11"] = encoder("1girl wear red hat")
    graph["12"] = {
        "class_type": "EditBasicPipe",
        "inputs": {"basic_pipe": ["10", 0], "positive": ["11", 0]},
    }
    graph["13"] = {
        "class_type": "KSamplerAdvancedProvider",
        "inputs": {"cfg": 8, "basic_pipe": ["10", 0]},
    }
    graph["14"] = {
        "class_type": "KSamplerAdvancedProvider",
        "inputs": {"cfg": 8, "basic_pipe": ["12", 0]},
    }
    graph["15"] = {
        "class_type": "RegionalPrompt",
        "inputs": {"mask": ["16", 1], "advanced_sampler": ["14", 0]},
    }
    graph["2"] = {
        "class_type": "RegionalSampler",
        "inputs": {
            "seed": 1,
            "steps": 20,
            "base_only_steps": 2,
            "denoise": 1.0,
            "samples": ["5", 0],
            "base_sampler": ["13", 0],
            "regional_prompts": ["15", 0],
        },
    }
    graph["8"]["inputs"]["samples"] = ["2", 0]
    found = read_graph(graph)
    assert (found.prompt, found.negative) == ("1girl and 1man sitting in the cafe", "lowres")
    assert [(p.role, p.node) for p in found.passes] == [("base", "2")]


def test_a_stray_sampler_with_nothing_linked_is_no_pass():
    # A KSampler left on the canvas with no input linked (saved in the API graph, never run)
    # sorts before the real one when no Save node orders the outputs: it is not the base pass.
    graph = comfy_graph("a lighthouse at dusk")
    graph["9"]["class_type"] = "PreviewImage"
    graph["1"] = {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "denoise": 1}}
    found = read_graph(graph)
    assert found.prompt == "a lighthouse at dusk"
    assert [p.node for p in found.passes] == ["3"]


def test_pysssss_string_function_built_from_literals():
    # String Function: append joins the texts (", " and tidied with tidy_tags); a /regex/
    # replace is left to run time.
    graph = comfy_graph("")
    graph["31"] = {"class_type": "TextInput_", "inputs": {"text": "Joker, green hair ,red lips"}}
    graph["28"] = {
        "class_type": "StringFunction|pysssss",
        "inputs": {
            "action": "append",
            "tidy_tags": "yes",
            "text_a": ["31", 0],
            "text_b": "((masterpiece))",
            "text_c": "",
        },
    }
    graph["6"]["inputs"]["text"] = ["28", 0]
    assert read_graph(graph).prompt == "Joker, green hair,red lips, ((masterpiece))"
    graph["28"]["inputs"].update(action="replace", tidy_tags="no", text_b="Joker", text_c="Batman")
    assert read_graph(graph).prompt == "Batman, green hair ,red lips"
    graph["28"]["inputs"]["text_b"] = "/J.*r/"
    found = read_graph(graph)
    assert found.prompt is None and "StringFunction|pysssss" in (found.note or "")


def test_rgthree_context_carries_positive_at_4_and_negative_at_5():
    graph = comfy_graph("a castle at night", "blurry")
    graph["20"] = {
        "class_type": "Context (rgthree)",
        "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0]},
    }
    graph["21"] = {
        "class_type": "Context (rgthree)",
        "inputs": {"base_ctx": ["20", 0], "latent": ["5", 0]},
    }
    graph["22"] = {"class_type": "Context Switch (rgthree)", "inputs": {"ctx_01": ["21", 0]}}
    graph["3"]["inputs"].update(positive=["22", 4], negative=["22", 5], model=["22", 1])
    found = read_graph(graph)
    assert (found.prompt, found.negative) == ("a castle at night", "blurry")


def test_rgthree_power_prompt_simple():
    graph = comfy_graph("")
    graph["6"] = {
        "class_type": "Power Prompt - Simple (rgthree)",
        "inputs": {"prompt": "asuna, masterpiece", "opt_clip": ["4", 1]},
    }
    assert read_graph(graph).prompt == "asuna, masterpiece"
