"""Group-aware folds: near-paraphrases share a group, and a group never straddles two folds."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import GroupKFold

from img2prompt.errors import ConfigError


def connected_groups(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Group id per item: the connected components of the graph with edges (a[k], b[k]).

    Ids are numbered in order of each group's first item, so they are stable for a given input.
    """
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first_seen = np.unique(labels, return_index=True)
    renumber = np.empty(len(first_seen), dtype=np.int64)
    renumber[np.argsort(np.argsort(first_seen))] = np.arange(len(first_seen))
    return renumber[labels]


def assign_folds(groups: np.ndarray, folds: int) -> np.ndarray:
    """Fold per row with scikit-learn's GroupKFold: biggest groups first, each to the lightest fold.

    `groups` has one entry per row (a prompt with several images has several rows), so folds are
    balanced in rows, which is what training iterates over.
    """
    if folds < 2:
        return np.zeros(len(groups), dtype=np.int64)
    distinct = len(np.unique(groups))
    if distinct < folds:
        raise ConfigError(
            f"cannot make {folds} folds from {distinct} group(s): lower --folds or raise "
            "--group-threshold so fewer prompts are joined"
        )
    fold_of = np.empty(len(groups), dtype=np.int64)
    for fold, (_, held_out) in enumerate(GroupKFold(n_splits=folds).split(groups, groups=groups)):
        fold_of[held_out] = fold
    return fold_of
