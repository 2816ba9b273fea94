"""Memory returns after bad files: a failed decode keeps its reason, never Pillow's exception
(whose traceback holds the decoder's frames and a buffer as large as the header declared), a
header declaring far more pixels (or rows) than its file holds is refused before anything is
allocated, and an image of extreme aspect is cropped, not resized whole."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2prompt.data import transforms
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


PEAK_MB = 64
"""What refusing a hostile header may add to peak memory (measured: under 1 MB; a 1x83,886,338
BLP, BMP or PGM took 640 MB of row pointers before failing)."""
UNBOUNDED_KINDS = ("jpeg2000", "fli")
"""Hostile kinds whose decoders can fill a picture from a few bytes, so no check of the data
refuses them unread: the pixel limit and the decoding budget bound them (~310 MB at 81 Mpx)."""


def peak_mb(action: Callable[[], object]) -> float:
    """How far resident memory peaked above its level before `action` (VmHWM, reset first)."""
    before = rss_mb()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size
    except OSError:
        pytest.skip("cannot reset the peak-memory mark (/proc/self/clear_refs)")
    with contextlib.suppress(InputError):
        action()
    with open("/proc/self/status") as f:
        peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return peak_kb / 1024 - before


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
    tall = [p for p in hostile if "1x83886338" in p.name]  # BLP (palette, DXT), PSD, BMP, PGM
    assert refused and len(tall) == 5
    for path in refused:
        with pytest.raises(InputError, match="header declares 9000x9000 pixels but the file"):
            load_image(path)
    for path in tall:
        with pytest.raises(InputError, match="header declares 1x83886338 pixels but the file"):
            load_image(path)


def test_refusing_a_hostile_header_touches_no_memory(hostile):
    bounded = [p for p in hostile if p.name.split("-")[1] not in UNBOUNDED_KINDS]
    assert len(bounded) >= 18
    peaks = {p.name: peak_mb(lambda p=p: load_image(p)) for p in bounded}
    assert max(peaks.values()) < PEAK_MB, peaks


def test_an_extreme_aspect_image_is_cropped_without_resizing_all_of_it():
    cfg = transforms.PreprocessConfig(224, 224, (0.5,) * 3, (0.5,) * 3)
    column = Image.linear_gradient("L").resize((1, 5000)).convert("RGB")
    crops: list[Image.Image] = []
    assert peak_mb(lambda: crops.append(transforms.resize_and_crop(column, cfg))) < PEAK_MB
    assert crops[0].size == (224, 224)  # resizing all of it: 224x1,120,000, 1 GB


def test_the_cropped_resize_gives_the_whole_resize_s_crop(monkeypatch):
    cfg = transforms.PreprocessConfig(224, 256, (0.5,) * 3, (0.5,) * 3)
    ramp = Image.linear_gradient("L").rotate(30).resize((300, 14)).convert("RGB")
    for image in (ramp, ramp.rotate(90, expand=True)):  # wide and tall, 21:1
        cropped = np.asarray(transforms.resize_and_crop(image, cfg), np.int16)
        monkeypatch.setattr(transforms, "EXTREME_ASPECT", 10**9)
        whole = np.asarray(transforms.resize_and_crop(image, cfg), np.int16)
        monkeypatch.undo()
        assert np.abs(cropped - whole).max() <= 2


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
