"""The precision question on CPUs without native bf16: `IMG2PROMPT_NATIVE_BF16` makes a bf16 CPU
answer as an AVX2 one does (for measuring what most users get), and `auto` then runs int8 linear
layers where they keep accuracy (prediction's network, decoding's search encodes), else fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bank_helpers import PHRASES, STYLES, write_lines
from img2prompt.device import cpu_flags, native_bf16
from img2prompt.errors import ConfigError
from img2prompt.metrics import cosines
from img2prompt.predict import engine
from img2prompt.predict.options import PredictOptions
from img2prompt.predict.predictor import Predictor
from tiny_checkpoints import save_tiny_clip

INT8_COSINE = engine.INT8_MIN_COSINE  # the stated bound: auto's own threshold


@pytest.fixture
def no_native_bf16(monkeypatch, fresh_answer):
    monkeypatch.setenv("IMG2PROMPT_NATIVE_BF16", "0")


@pytest.mark.parametrize("value,expected", [("0", False), ("1", True)])
def test_the_override_decides_native_bf16(monkeypatch, fresh_answer, value, expected):
    monkeypatch.setenv("IMG2PROMPT_NATIVE_BF16", value)
    assert native_bf16("cpu") is expected


def test_without_the_override_the_cpu_flags_decide(monkeypatch, fresh_answer):
    monkeypatch.delenv("IMG2PROMPT_NATIVE_BF16", raising=False)
    flags = cpu_flags()
    assert native_bf16("cpu") == ("avx512_bf16" in flags or "amx_bf16" in flags)
    assert set(flags) <= {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}


# --- prediction ---------------------------------------------------------------------------------


def tiny_clip_model(tmp_path):
    from img2prompt.models.model import ImageToPromptModel, ModelConfig

    torch.manual_seed(0)
    backbone = f"hf-clip:{save_tiny_clip(tmp_path / 'clip')}"
    return ImageToPromptModel(ModelConfig(backbone=backbone), pretrained=True)


def embed(model, precision: str, pixels: torch.Tensor) -> tuple[torch.Tensor, Predictor]:
    predictor = Predictor(model, PredictOptions(device="cpu", compile=False, precision=precision))
    return predictor.embed_pixels(pixels), predictor


def quantized_linears(network: torch.nn.Module) -> tuple[int, int]:
    """(dynamic int8 linear layers, float nn.Linear layers left) in `network`."""
    from img2prompt.int8 import Int8Linear

    modules = list(network.modules())
    int8 = sum(isinstance(m, Int8Linear) for m in modules)
    plain = sum(type(m) is torch.nn.Linear for m in modules)
    return int8, plain


def test_int8_stays_within_its_cosine_of_fp32_on_a_tiny_clip(tmp_path):
    model = tiny_clip_model(tmp_path)
    pixels = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    exact, _ = embed(model, "fp32", pixels)
    fast, predictor = embed(model, "int8", pixels)
    assert predictor.engine.precision == "int8"
    int8, plain = quantized_linears(predictor.engine.network)
    assert int8 > 0 and plain == 0  # every linear layer runs in int8...
    convs = [m for m in predictor.engine.network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.dtype == torch.float32 for c in convs)  # ...convolutions not
    worst = cosines(exact, fast).min().item()
    assert INT8_COSINE <= worst < 0.99999  # close, and not the float32 network itself


def test_an_int8_copy_leaves_the_float32_network_as_it_was(tmp_path):
    """auto keeps the float32 network for its check (and runs it where int8 is refused): the
    copy must share nothing the int8 layers replace, and change nothing."""
    from img2prompt.int8 import int8_linears

    network = tiny_clip_model(tmp_path).network
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        before = network(pixels)
        copy = int8_linears(network)
        assert torch.equal(network(pixels), before)
        assert quantized_linears(network)[0] == 0 and quantized_linears(copy)[1] == 0
        norm = next(m for m in copy.modules() if isinstance(m, torch.nn.LayerNorm))
        assert all(norm.weight is not p for p in network.parameters())  # copied, not shared
        assert cosines(copy(pixels), before).min() >= INT8_COSINE


def test_int8_stays_within_its_cosine_of_fp32_on_the_default_model():
    import img2prompt
    from img2prompt.app.demo import example_images

    module = img2prompt.load_model("default", device="cpu").module
    images = example_images()
    results = {}
    for precision in ("fp32", "int8"):
        options = PredictOptions(device="cpu", compile=False, precision=precision)
        predictor = Predictor(module, options)
        results[precision] = predictor.predict_files(images, progress=False).embeddings
        assert predictor.engine.precision == precision
    assert quantized_linears(predictor.engine.network)[0] > 0
    worst = cosines(results["fp32"], results["int8"]).min()
    assert len(images) >= 2 and worst >= INT8_COSINE
    assert not np.array_equal(results["fp32"], results["int8"])  # only the head is linear


def test_auto_picks_int8_where_bf16_is_not_native_and_it_passes(tmp_path, no_native_bf16):
    model = tiny_clip_model(tmp_path)
    _, predictor = embed(model, "auto", torch.randn(4, 3, 32, 32))
    assert predictor.engine.precision == "int8"
    assert predictor.engine.precision_note.startswith("no native bf16 on this device; int8 checked")
    assert quantized_linears(predictor.engine.network)[0] > 0


def test_auto_runs_a_convolutional_model_in_fp32_without_a_check(no_native_bf16, monkeypatch):
    """int8 quantizes linear layers: a convolutional model has only a head's, so auto does not
    pay for the check (the default model's `describe one.png`)."""
    import img2prompt

    module = img2prompt.load_model("default", device="cpu").module
    monkeypatch.setattr(engine, "int8_linears", lambda network: pytest.fail("int8 was tried"))
    options = PredictOptions(device="cpu", compile=False)
    predictor = Predictor(module, options)
    predictor.embed_pixels(torch.zeros(1, 3, 224, 224))
    assert predictor.engine.precision == "fp32"
    assert predictor.engine.precision_note.endswith("int8 not tried: convolutional")


def test_auto_refuses_int8_that_fails_the_check(tmp_path, no_native_bf16, monkeypatch):
    monkeypatch.setattr(engine, "INT8_MIN_COSINE", 1.5)  # no cosine passes
    model = tiny_clip_model(tmp_path)
    pixels = torch.randn(4, 3, 32, 32)
    refused, predictor = embed(model, "auto", pixels)
    assert predictor.engine.precision == "fp32"
    assert "int8 checked and refused: cosine" in predictor.engine.precision_note
    assert quantized_linears(predictor.engine.network) == (0, quantized_linears(model.network)[1])
    exact, _ = embed(model, "fp32", pixels)
    torch.testing.assert_close(refused, exact, rtol=0, atol=0)  # the fp32 network ran


def test_int8_is_refused_on_cuda(tmp_path):
    model = tiny_clip_model(tmp_path)
    options = PredictOptions(device="cpu", precision="int8")
    with pytest.raises(ConfigError, match="--precision int8 runs on a CPU only"):
        engine.Engine(
            model.network,
            options,
            torch.device("cuda"),
            batch_rows=4,
            rows_per_image=1,
            per_image=lambda rows: rows,
        )


def test_commands_without_an_int8_path_refuse_it(tmp_path):
    from img2prompt.generate.options import GenerateConfig

    with pytest.raises(ConfigError, match="--precision int8 is offered by"):
        GenerateConfig(prompts=tmp_path / "p.txt", out=tmp_path / "out", precision="int8")


# --- decoding -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bank(tmp_path_factory, encoder):
    from img2prompt.text.bank import build_bank, load_bank

    folder = tmp_path_factory.mktemp("bank")
    lists = [write_lines(folder / "subjects.txt", PHRASES), write_lines(folder / "s.txt", STYLES)]
    build_bank(lists, folder / "bank", encoder, words=True, progress=False)
    return load_bank(folder / "bank", encoder)


def test_int8_search_encodes_are_close_to_fp32_and_not_equal(encoder, bank):
    from img2prompt.text.scorer import check_texts

    texts = check_texts(bank.texts)
    exact, exact_norms = encoder.encode_with_norms(texts)
    fast, fast_norms = encoder.encode_with_norms(texts, int8=True)
    worst = cosines(exact, fast).min()
    assert 0.8 <= worst < 0.9999  # int8, yet the same encoder (a broken path scores ~0)
    np.testing.assert_allclose(fast_norms, exact_norms, rtol=0.1)


def test_auto_search_refuses_int8_for_minilm(encoder, bank, no_native_bf16):
    """MiniLM's int8 encodes miss the 0.999 check (docs/readable-prompts.md): auto stays fp32."""
    from img2prompt.text.decode import DecodeOptions, Decoder

    decoder = Decoder(bank, encoder, DecodeOptions(mode="best", search_precision="auto"))
    assert decoder.scorer.search_precision == "fp32"
    assert decoder.scorer.search_note.startswith("no native bf16; int8 checked and refused")


def test_the_int8_search_check_runs_once_then_is_read_back(
    encoder, bank, no_native_bf16, monkeypatch, tmp_path
):
    """The check's cosine is kept in the cache folder: a second decoder (a second `describe`)
    answers the same without encoding the check texts again; another CPU's kernels check anew."""
    from img2prompt.text import scorer
    from img2prompt.text.decode import DecodeOptions, Decoder

    monkeypatch.setenv("IMG2PROMPT_CACHE", str(tmp_path))
    int8_encodes = []
    encode = encoder.encode_with_norms

    def spy(texts, batch_size=32, *, int8=False):
        int8_encodes.append(int8)
        return encode(texts, batch_size, int8=int8)

    monkeypatch.setattr(encoder, "encode_with_norms", spy)
    notes = []
    for _ in range(2):
        decoder = Decoder(bank, encoder, DecodeOptions(search_precision="auto"))
        notes.append(decoder.scorer.search_note)
    assert int8_encodes.count(True) == 1 and notes[0] == notes[1]
    assert "int8 checked and refused" in notes[0]
    monkeypatch.setattr(scorer, "cpu_kernels", lambda: "another CPU")
    Decoder(bank, encoder, DecodeOptions(search_precision="auto"))
    assert int8_encodes.count(True) == 2


def test_auto_search_runs_int8_where_it_passes(encoder, bank, no_native_bf16, monkeypatch):
    from img2prompt.text import scorer
    from img2prompt.text.decode import DecodeOptions, Decoder

    monkeypatch.setattr(scorer, "INT8_MIN_COSINE", 0.5)  # a check that int8 passes
    decoder = Decoder(bank, encoder, DecodeOptions(mode="best", search_precision="auto"))
    assert decoder.scorer.search_precision == "int8"
    assert decoder.scorer.search_note.startswith("no native bf16; int8 checked: cosine")


def test_auto_search_stays_bf16_where_bf16_is_native(encoder, bank, monkeypatch, fresh_answer):
    from img2prompt.text.decode import DecodeOptions, Decoder

    monkeypatch.setenv("IMG2PROMPT_NATIVE_BF16", "1")
    decoder = Decoder(bank, encoder, DecodeOptions(mode="best", search_precision="auto"))
    assert decoder.scorer.search_precision == "bf16"


@pytest.mark.parametrize("mode", ["fast", "best"])
def test_an_int8_search_still_prints_exact_matches(encoder, bank, mode):
    from img2prompt.text.decode import DecodeOptions, Decoder

    prompts = ["a red fox sleeping in the snow, watercolor", "a castle on a hill at sunset"]
    targets = encoder.encode(prompts)
    decoder = Decoder(bank, encoder, DecodeOptions(mode=mode, search_precision="int8"))
    decoded = decoder.decode(targets)
    exact = encoder.encode([d.prompt for d in decoded])
    np.testing.assert_allclose(
        [d.match for d in decoded], cosines(exact, targets), rtol=0, atol=1e-6
    )
    search = [decoder.scorer.encode([d.prompt])[0][0] for d in decoded]  # int8 vectors...
    assert not np.allclose(np.stack(search), exact, atol=1e-4)  # ...are not the exact ones
