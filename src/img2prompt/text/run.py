"""The `decode` command: read targets (texts to round-trip or a .npy of vectors), decode them with
a bank, write the prompts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from img2prompt.data.clean import clean_prompt
from img2prompt.data.sources import read_source
from img2prompt.errors import ConfigError, ErrorLog, InputError
from img2prompt.results import NEIGHBORS, write_results
from img2prompt.targets.encoder import TargetEncoder, load_encoder
from img2prompt.text.bank import open_bank
from img2prompt.text.decode import Decoded, Decoder, check_targets
from img2prompt.text.options import DecodeConfig


@dataclass
class DecodeRun:
    inputs: list[str]  # the round-tripped texts, or `row N` of the embeddings file
    decoded: list[Decoded]
    seconds: float
    encodes: int  # texts the encoder embedded while searching


def read_targets(cfg: DecodeConfig, encoder: TargetEncoder) -> tuple[list[str], np.ndarray]:
    """(labels, unit vectors): texts are embedded here; a .npy is checked row by row."""
    if cfg.embeddings is not None:
        return _read_npy(cfg.embeddings, encoder.dim)
    if cfg.text:
        texts = [clean_prompt(t) for t in cfg.text]
        if not all(texts):
            raise ConfigError("--text: an empty text has nothing to decode")
    else:
        assert cfg.texts is not None
        rows = read_source(cfg.texts, ErrorLog("fail"))
        texts = [clean_prompt(row.prompt_raw) for row in rows]
        texts = [t for t in texts if t]
        if not texts:
            raise InputError(cfg.texts, "no texts to decode")
    return texts, encoder.encode(texts)


def _read_npy(path: Path, dim: int) -> tuple[list[str], np.ndarray]:
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(path, f"not a readable .npy array: {e}") from None
    if not isinstance(array, np.ndarray):
        raise InputError(path, "expected one array in a .npy file, not an .npz archive")
    vectors = check_targets(array, dim, source=str(path))
    return [f"row {i}" for i in range(len(vectors))], vectors


def run_decode(cfg: DecodeConfig, progress: bool = True) -> DecodeRun:
    import time

    from img2prompt.text.strategies import check_mode

    check_mode(cfg.options.mode)
    encoder = load_encoder(cfg.encoder, cfg.device)
    bank = open_bank(cfg.bank, encoder, progress=progress)
    labels, targets = read_targets(cfg, encoder)
    decoder = Decoder(bank, encoder, cfg.options)
    started = time.perf_counter()
    decoded = decoder.decode(targets)
    run = DecodeRun(labels, decoded, time.perf_counter() - started, decoder.encodes)
    if cfg.out is not None:
        write_decoded(run, cfg.out)
    return run


DECODED_SCHEMA = pa.schema(
    [
        ("input", pa.string()),
        ("prompt", pa.string()),
        ("match", pa.float32()),
        ("phrases", pa.list_(pa.string())),
        ("neighbors", NEIGHBORS),
    ]
)


def write_decoded(run: DecodeRun, out: Path) -> None:
    """`.txt`: one prompt a line, input order; `.json`/`.parquet`: input, prompt, match,
    phrases, neighbors (`results.write_results`)."""
    rows = [{"input": x} | d.to_json() for x, d in zip(run.inputs, run.decoded, strict=True)]
    write_results(out, rows, DECODED_SCHEMA)
