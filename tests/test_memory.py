"""Memory returns after bad files: a failed decode keeps its reason, never Pillow's exception
(whose traceback holds the decoder's frames and a buffer as large as the header declared), and a
header declaring far more pixels than its file holds is refused before anything is allocated."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
from pathlib import Path

import pytest
import torch

from img2prompt.data.images import load_image
from img2prompt.errors import InputError
from img2prompt.models.model import ImageToPromptModel, ModelConfig, save_model
from img2prompt.predict.predictor import PredictOptions, Predictor
from img2prompt.predict.reader import ImageReader
from odd_images import hostile_images, write_odd_images

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/statm")

HELD_MB = 150
"""What 20 failed decodes may leave in memory (measured: ~5 MB; keeping each failure's
exception held 1.3 GB)."""


def rss_mb() -> float:
    """Resident memory now, after collecting garbage and handing freed heap back to the OS
    (glibc keeps freed blocks otherwise, which would hide nothing and blur the figure)."""
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("hostile")
    for name, data in hostile_images().items():
        (folder / name).write_bytes(data)
    return sorted(folder.iterdir())


def test_the_hostile_set_covers_the_formats_fuzzers_break(hostile):
    assert len(hostile) >= 20
    kinds = {p.name.split("-")[1] for p in hostile}
    for kind in ("blp", "dds", "fli", "tga", "pcx", "sgi", "psd", "icns", "tiff", "jpeg2000"):
        assert kind in kinds, kind


def test_failed_decodes_kept_as_errors_hold_no_memory(hostile):
    before = rss_mb()
    kept: list[InputError] = []
    for path in hostile:
        with pytest.raises(InputError) as caught:
            load_image(path)
        kept.append(caught.value)  # what a failure record would keep
    assert all(e.path == str(p) for e, p in zip(kept, hostile, strict=True))
    assert rss_mb() - before < HELD_MB


def test_a_header_declaring_more_than_its_file_holds_is_refused_unread(hostile):
    refused = [p for p in hostile if "9000x9000" in p.name and p.suffix in (".tga", ".psd")]
    assert refused
    for path in refused:
        with pytest.raises(InputError, match="header declares 9000x9000 pixels but the file"):
            load_image(path)


def test_errors_kept_by_the_reader_carry_no_traceback_or_context(hostile):
    reader = ImageReader(lambda image: image, fit=32, max_pixels=100_000_000, workers=0)
    for name, result in reader.read(hostile):
        assert isinstance(result, InputError), name
        assert result.__traceback__ is None and result.__context__ is None, name
        assert result.__cause__ is None, name


def test_predictor_over_hostile_files_reports_each_and_memory_returns(hostile, tmp_path):
    torch.manual_seed(0)
    network = ImageToPromptModel(ModelConfig(backbone="tiny-clip:32"), pretrained=False)
    model = save_model(network, tmp_path / "model")
    good = write_odd_images(tmp_path / "odd", huge=None, hostile=False)
    decodable = [tmp_path / "odd" / name for name, ok in good.items() if ok][:6]
    predictor = Predictor(model, PredictOptions(workers=2, batch_size=4))
    predictor.predict_files(decodable[:2], progress=False)  # model and threads warmed up
    before = rss_mb()
    result = predictor.predict_files([*hostile, *decodable], progress=False)
    assert sorted(f.image for f in result.failures) == sorted(map(str, hostile))
    assert result.images == [str(p) for p in decodable]
    assert all(f.reason and isinstance(f.reason, str) for f in result.failures)
    assert rss_mb() - before < HELD_MB
