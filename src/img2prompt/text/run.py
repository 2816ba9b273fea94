"""The `decode` command: read targets (texts to round-trip or a .npy of vectors), decode them with
a bank, write the prompts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from img2prompt.config import DecodeConfig
from img2prompt.data.clean import clean_prompt
from img2prompt.data.embed import TargetEncoder, load_encoder
from img2prompt.data.sources import read_source
from img2prompt.errors import ConfigError, ErrorLog, InputError
from img2prompt.io import atomic_path, write_parquet
from img2prompt.text.bank import open_bank
from img2prompt.text.decode import Decoded, Decoder, check_targets


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


def write_decoded(run: DecodeRun, out: Path) -> None:
    """`.txt`: one prompt a line, input order; `.parquet`: prompt, score, phrases, neighbours."""
    if out.suffix.lower() == ".txt":
        with atomic_path(out) as tmp:
            tmp.write_text("".join(d.prompt + "\n" for d in run.decoded), encoding="utf-8")
        return
    table = pa.table(
        {
            "input": run.inputs,
            "prompt": [d.prompt for d in run.decoded],
            "score": pa.array([d.score for d in run.decoded], pa.float32()),
            "phrases": [d.phrases for d in run.decoded],
            "neighbours": [[text for text, _ in d.neighbours] for d in run.decoded],
            "neighbour_cosines": pa.array(
                [[c for _, c in d.neighbours] for d in run.decoded], pa.list_(pa.float32())
            ),
        }
    )
    write_parquet(table, out)
