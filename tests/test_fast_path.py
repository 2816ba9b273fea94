"""The precision question on CPUs without native bf16: `IMG2PROMPT_NATIVE_BF16` makes a bf16 CPU
answer as an AVX2 one does (for measuring what most users get), and `auto` then runs fp32."""

from __future__ import annotations

import pytest

from img2prompt.device import cpu_flags, native_bf16


@pytest.fixture
def fresh_answer():
    native_bf16.cache_clear()  # the answer is cached per device
    yield
    native_bf16.cache_clear()


@pytest.mark.parametrize("value,expected", [("0", False), ("1", True)])
def test_the_override_decides_native_bf16(monkeypatch, fresh_answer, value, expected):
    monkeypatch.setenv("IMG2PROMPT_NATIVE_BF16", value)
    assert native_bf16("cpu") is expected


def test_without_the_override_the_cpu_flags_decide(monkeypatch, fresh_answer):
    monkeypatch.delenv("IMG2PROMPT_NATIVE_BF16", raising=False)
    flags = cpu_flags()
    assert native_bf16("cpu") == ("avx512_bf16" in flags or "amx_bf16" in flags)
    assert set(flags) <= {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}


def test_auto_precision_runs_fp32_where_bf16_is_not_native(monkeypatch, fresh_answer):
    import torch

    from img2prompt.models.model import ImageToPromptModel, ModelConfig
    from img2prompt.predict.options import PredictOptions
    from img2prompt.predict.predictor import Predictor

    monkeypatch.setenv("IMG2PROMPT_NATIVE_BF16", "0")
    torch.manual_seed(0)
    model = ImageToPromptModel(ModelConfig(backbone="tiny-clip:32"), pretrained=False)
    predictor = Predictor(model, PredictOptions(device="cpu", compile=False))
    predictor.embed_pixels(torch.randn(2, 3, 32, 32))
    assert predictor.engine.precision == "fp32"
    assert predictor.engine.precision_note == "no native bf16 on this device"
