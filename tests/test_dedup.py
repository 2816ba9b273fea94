import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2prompt.data.dedup import (
    approx_near_duplicates,
    exact_near_duplicates,
    pair_recall,
    similar_pairs,
)
from reference import brute_force_keep, brute_force_pairs, clustered_unit_rows


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    dim=st.sampled_from([2, 5, 16]),
    spread=st.floats(0.02, 1.0),
    threshold=st.floats(0.3, 1.0),
    block_size=st.integers(1, 128),
)
def test_exact_mode_equals_brute_force(seed, n, dim, spread, threshold, block_size):
    emb = clustered_unit_rows(np.random.default_rng(seed), n, dim, spread)
    result = exact_near_duplicates(emb, threshold, block_size=block_size)
    np.testing.assert_array_equal(result.keep, brute_force_keep(emb, threshold))
    # Every dropped row points at a kept row it is similar to.
    dropped = np.flatnonzero(~result.keep)
    partners = result.duplicate_of[dropped]
    assert result.keep[partners].all()
    assert (partners < dropped).all()
    cos = np.einsum("ij,ij->i", emb[dropped].astype(float), emb[partners].astype(float))
    assert (cos >= threshold - 1e-6).all()


def test_threshold_is_inclusive_and_one_means_identical_only():
    rng = np.random.default_rng(0)
    emb = clustered_unit_rows(rng, 50, 8, 0.3)
    emb = np.concatenate([emb, emb[:5]])  # exact copies at the end
    keep = exact_near_duplicates(emb, 1.0).keep
    np.testing.assert_array_equal(keep, np.r_[np.ones(50, bool), np.zeros(5, bool)])
    # A pair at exactly the threshold is a duplicate.
    a = np.array([1.0, 0.0], np.float32)
    b = np.array([0.6, 0.8], np.float32)
    assert not exact_near_duplicates(np.stack([a, b]), float(a @ b)).keep[1]


@pytest.fixture(scope="module")
def real_prompt_embeddings(shared_data, encoder):
    """About 1,500 real prompt-like texts: subjects from the DiffusionDB-derived list with the
    same subjects again plus a style phrase, so near-duplicates exist at every threshold."""
    subjects = json.loads((shared_data / "prompt_banks" / "magicprompt_subjects.json").read_text())
    flavors = (shared_data / "prompt_banks" / "flavors.txt").read_text().splitlines()
    rng = np.random.default_rng(0)
    picked = [subjects[i] for i in rng.choice(len(subjects), 1000, replace=False)]
    variants = [f"{s}, {flavors[i % 50]}" for i, s in enumerate(picked[:500])]
    texts = picked + variants
    order = rng.permutation(len(texts))
    return encoder.encode([texts[i] for i in order])


@pytest.mark.parametrize("threshold", [0.75, 0.85, 0.95])
def test_exact_mode_equals_brute_force_on_real_prompts(real_prompt_embeddings, threshold):
    emb = real_prompt_embeddings
    expected = brute_force_keep(emb, threshold)
    assert 0 < (~expected).sum() < len(emb)  # the case is not trivial
    np.testing.assert_array_equal(exact_near_duplicates(emb, threshold, 256).keep, expected)


def test_approx_mode_with_all_lists_probed_is_exact(real_prompt_embeddings):
    emb = real_prompt_embeddings
    result = approx_near_duplicates(emb, 0.85, nprobe=10_000)
    np.testing.assert_array_equal(result.keep, brute_force_keep(emb, 0.85))
    assert result.pair_recall == 1.0


def test_approx_mode_reports_recall_below_one_when_it_misses_pairs():
    emb = clustered_unit_rows(np.random.default_rng(3), 4000, 16, 0.6)
    result = approx_near_duplicates(emb, 0.8, nprobe=1, recall_sample=4000)
    a, b = similar_pairs(emb, 0.8, "approx", nprobe=1)
    truth = brute_force_pairs(emb, 0.8)
    found = set(zip(a.tolist(), b.tolist(), strict=True))
    assert found <= truth
    assert result.pair_recall == pytest.approx(len(found) / len(truth))
    assert result.pair_recall < 1.0


@pytest.mark.parametrize("mode", ["exact", "approx"])
def test_similar_pairs_equal_brute_force(mode):
    emb = clustered_unit_rows(np.random.default_rng(1), 500, 8, 0.4)
    a, b = similar_pairs(emb, 0.9, mode, block_size=64, nprobe=10_000)
    assert (a < b).all()
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == brute_force_pairs(emb, 0.9)


def test_pair_recall_counts_missing_pairs():
    emb = clustered_unit_rows(np.random.default_rng(2), 200, 4, 0.2)
    a, b = similar_pairs(emb, 0.95)
    assert pair_recall(emb, 0.95, a, b, sample_size=200) == 1.0
    half = len(a) // 2
    assert pair_recall(emb, 0.95, a[:half], b[:half], sample_size=200) == pytest.approx(
        half / len(a)
    )


@pytest.mark.parametrize(
    ("emb", "threshold", "message"),
    [
        (np.zeros(5, np.float32), 0.9, "2-d"),
        (np.zeros((5, 3), np.float32), 0.0, r"\(0, 1\]"),
        (np.zeros((5, 3), np.float32), 1.5, r"\(0, 1\]"),
    ],
)
def test_bad_arguments_are_rejected(emb, threshold, message):
    with pytest.raises(ValueError, match=message):
        exact_near_duplicates(emb, threshold)


def test_unnormalised_embeddings_are_refused():
    emb = 1000 * clustered_unit_rows(np.random.default_rng(0), 10, 4, 0.3)
    with pytest.raises(ValueError, match="L2-normalised"):
        exact_near_duplicates(emb, 0.9)


@pytest.mark.parametrize("mode", ["exact", "approx"])
def test_empty_input(mode):
    empty = np.zeros((0, 8), np.float32)
    a, b = similar_pairs(empty, 0.9, mode)
    assert len(a) == len(b) == 0
    assert len(exact_near_duplicates(empty, 0.9).keep) == 0
    assert approx_near_duplicates(empty, 0.9).pair_recall is None
