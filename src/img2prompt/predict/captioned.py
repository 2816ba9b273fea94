"""A captioner's candidates, kept beside its embeddings, and a judge that reranks them.

`CaptionPredictor` is the `Predictor` that `describe` runs for a captioner: the same stages
(reader, TTA views, batches), but its last stage calls the captioner itself, so each image's
candidate prompts are kept (`take`) beside the embedding, and a judge model (any other model:
trained, retrieval, the default) predicts its own embedding of the same image. The judge sees
the captioner's square crop, resized to its own input.

`judge_candidates` is the reranking: each candidate's MiniLM vector against the judge's
embedding, by cosine; the candidates' spread says how much the choice mattered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from img2prompt.errors import ConfigError
from img2prompt.models.captioner import CaptionerModel, Captions, to_uint8
from img2prompt.models.protocol import PromptModel
from img2prompt.predict.options import PredictOptions
from img2prompt.predict.predictor import Predictor


@dataclass
class Captioned:
    """One image's candidates, with the judge's verdict when there is a judge."""

    captions: Captions
    vectors: np.ndarray
    """(N, 384) unit MiniLM vectors of `captions.texts`."""
    judge: np.ndarray | None = None
    """The judge's (384,) unit embedding of the image."""

    @property
    def cosines(self) -> np.ndarray | None:
        """Each candidate's cosine to the judge's embedding (None without a judge)."""
        return None if self.judge is None else self.vectors @ self.judge


@dataclass
class Judged:
    """The judge's reranking of one image's candidates."""

    order: list[int]
    """Candidate indices, the judge's favourite first."""
    cosines: np.ndarray
    """Each candidate's cosine to the judge's embedding (candidate order)."""

    @property
    def best(self) -> int:
        return self.order[0]

    @property
    def cosine(self) -> float:
        return float(self.cosines[self.best])

    @property
    def spread(self) -> float:
        """Highest minus lowest candidate cosine: how much the judge's choice mattered."""
        return float(self.cosines.max() - self.cosines.min())


def judge_candidates(vectors: np.ndarray, judge: np.ndarray) -> Judged:
    """Rerank candidates by cosine of their unit MiniLM `vectors` to the judge's unit embedding
    (ties keep the captioner's order)."""
    cosines = (vectors @ judge).astype(np.float64)
    order = sorted(range(len(cosines)), key=lambda i: (-cosines[i], i))
    return Judged(order, cosines)


class CaptionPredictor(Predictor):
    """A captioner's predictor that keeps each image's candidates (and a judge's embedding of
    it): `embed_pixels`, where every path of `Predictor` ends, runs the captioner directly and
    records what it wrote, in input order, until `take` hands it over. One thread at a time."""

    def __init__(
        self,
        model: CaptionerModel,
        options: PredictOptions | None = None,
        judge: PromptModel | None = None,
    ) -> None:
        super().__init__(model, options)
        if judge is not None and judge.kind == model.kind:
            raise ConfigError("a judge predicts embeddings: give a trained or index model")
        self.judge = Predictor(judge, self.options) if judge is not None else None
        self._kept: list[Captioned] = []

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(B * V, 3, S, S) pixels -> (B, 384) merged unit rows of the best candidates' MiniLM
        vectors; each image's plain-view candidates (and judge embedding) are kept."""
        model: CaptionerModel = self.model  # type: ignore[assignment]
        pixels = torch.as_tensor(pixels).to(self.device)
        captions = model.caption(pixels)
        best = torch.from_numpy(model.embed(captions))
        plain = captions[:: self.tta.count]
        vectors = [model.encoder().encode(c.texts) for c in plain]
        judged = self._judge(pixels[:: self.tta.count])
        self._kept += [
            Captioned(c, v, None if judged is None else judged[i])
            for i, (c, v) in enumerate(zip(plain, vectors, strict=True))
        ]
        return self.tta.merge(best).cpu()

    def _judge(self, pixels: torch.Tensor) -> np.ndarray | None:
        """The judge's embeddings of the captioner's crops."""
        if self.judge is None:
            return None
        images = [Image.fromarray(crop) for crop in to_uint8(pixels)]
        return self.judge.embed_images(images)

    def take(self) -> list[Captioned]:
        """What was captioned since the last call, in input order."""
        kept, self._kept = self._kept, []
        return kept
