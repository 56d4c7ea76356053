"""Estimators: shapes, shrinkage limits, priors, leave-one-out tuning, manifest round trip and refusal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router_core.errors import IndexMismatchError
from router_core.estimator import QueryFeatures, ReferenceTable
from router_core.estimators import ESTIMATORS, create_estimator, estimator_class
from router_core.estimators.cost import length_adjusted_cost
from router_core.estimators.kernel import GRID, KernelShrink, kernel_sums, shrink
from router_core.estimators.metrics import brier, log_loss, mape
from router_core.estimators.prior import Prior
from router_core.index import AnnIndex, IndexManifest
from router_core.neighbours import Neighbours, exact_neighbours, history_neighbours
from router_core.params import IndexParams, PortParams


def _table(n: int = 30, m: int = 3, seed: int = 0, tasks: tuple[str, ...] | None = None) -> ReferenceTable:
    rng = np.random.default_rng(seed)
    return ReferenceTable(rng.random((n, m)), rng.uniform(1e-4, 1e-3, (n, m)), rng.uniform(50, 500, n),
                          tasks if tasks is not None else ("",) * n)


def _neighbours(b: int, k: int, n: int, seed: int = 0) -> Neighbours:
    rng = np.random.default_rng(seed)
    labels = np.stack([rng.choice(n, k, replace=False) for _ in range(b)])
    similarity = -np.sort(-rng.uniform(0.2, 1.0, (b, k)), axis=1)
    return Neighbours(labels, similarity)


def _index(vectors: np.ndarray) -> AnnIndex:
    manifest = IndexManifest(embedding_model="synthetic", dimension=vectors.shape[1], count=len(vectors),
                             data_hash="x", m=32, ef_construction=200)
    return AnnIndex.build(vectors.astype(np.float32), IndexParams(), manifest)


def _clustered(n_clusters: int, per_cluster: int, dimension: int = 16, spread: float = 0.05,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in tight clusters and each row's cluster number."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dimension))
    cluster = np.repeat(np.arange(n_clusters), per_cluster)
    vectors = centres[cluster] + spread * rng.normal(size=(len(cluster), dimension))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), cluster


SETTINGS = {"k": 8, "temperature": 0.2, "strength": 2.0, "cost_k": 4, "length_power": 0.5}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_gives_one_row_per_query_and_model(name):
    table = _table()
    settings_ = {"k": 5} if name == "knn-mean" else SETTINGS
    estimator = create_estimator(name, table, settings_)
    est = estimator.estimate_from(_neighbours(7, estimator.neighbours_needed, len(table)),
                                  QueryFeatures(np.full(7, 100.0), ["t"] * 7))
    assert est.quality.shape == est.cost.shape == (7, 3)
    assert np.all((est.quality >= 0) & (est.quality <= 1))
    assert np.all(est.cost > 0)


def test_unknown_estimator_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown estimator 'nope'.*knn-mean"):
        estimator_class("nope")


def test_zero_strength_is_the_kernel_mean_and_a_huge_strength_the_prior():
    table = _table()
    nb = _neighbours(5, 6, len(table))
    weighted, weight = kernel_sums(nb, table.quality, 6, 0.1)
    prior = np.full((5, 3), 0.42)
    w = np.exp((nb.similarity - 1) / 0.1)
    expected = (w[:, :, None] * table.quality[nb.labels]).sum(axis=1) / w.sum(axis=1)[:, None]
    np.testing.assert_allclose(shrink(weighted, weight, prior, 0.0), expected)
    np.testing.assert_allclose(shrink(weighted, weight, prior, 1e12), prior, atol=1e-9)


def test_a_flat_kernel_without_shrinkage_is_the_knn_mean():
    table = _table()
    nb = _neighbours(4, 5, len(table))
    flat = create_estimator("kernel-shrink", table, {**SETTINGS, "k": 5, "temperature": 1e9, "strength": 0.0,
                                                     "cost_k": 5, "length_power": 0.0})
    knn = create_estimator("knn-mean", table, {"k": 5})
    a, b = flat.estimate_from(nb, QueryFeatures()), knn.estimate_from(nb, QueryFeatures())
    np.testing.assert_allclose(a.quality, b.quality)
    np.testing.assert_allclose(a.cost, b.cost)


@settings(max_examples=50, deadline=None)
@given(temperature=st.floats(0.01, 10.0), strength=st.floats(0.0, 1e4), k=st.integers(1, 10),
       seed=st.integers(0, 1000))
def test_estimates_stay_between_the_neighbours_and_the_prior(temperature, strength, k, seed):
    table = _table(seed=seed)
    nb = _neighbours(6, k, len(table), seed)
    prior = Prior.fit(table.quality, table.tasks, by_task=False).means(QueryFeatures(), 6)
    weighted, weight = kernel_sums(nb, table.quality, k, temperature)
    est = shrink(weighted, weight, prior, strength)
    values = np.concatenate([table.quality[nb.labels], prior[:, None, :]], axis=1)
    assert np.all(est >= values.min(axis=1) - 1e-12)
    assert np.all(est <= values.max(axis=1) + 1e-12)


def test_task_prior_uses_known_labels_and_falls_back_to_the_global_mean():
    quality = np.array([[1.0], [1.0], [0.0], [0.0], [0.5]])
    prior = Prior.fit(quality, ("a", "a", "b", "b", ""), by_task=True)
    means = prior.means(QueryFeatures(tasks=["a", "b", "unseen", None]), 4)
    np.testing.assert_allclose(means[:, 0], [1.0, 0.0, 0.5, 0.5])
    assert np.all(Prior.fit(quality, ("a", "a", "b", "b", ""), by_task=False).groups(
        QueryFeatures(tasks=["a"]), 1) == -1)


def test_history_rows_are_left_out_of_their_own_prior():
    quality = np.array([[1.0], [0.0], [0.0], [1.0]])
    prior = Prior.fit(quality, ("a", "a", "a", "solo"), by_task=True)
    means = prior.means(QueryFeatures(tasks=("a", "a", "a", "solo"), rows=np.arange(4)), 4)
    # Row 0's task mean without it is 0; the only "solo" row falls back to the global mean without it.
    np.testing.assert_allclose(means[:, 0], [0.0, 0.5, 0.5, 1 / 3])


def test_cost_scales_with_the_prompt_length_relative_to_the_neighbours():
    cost = np.array([[1.0, 2.0], [3.0, 4.0]])
    lengths = np.array([100.0, 300.0])
    nb = Neighbours(np.array([[0, 1], [0, 1]]), np.ones((2, 2)))
    adjusted = length_adjusted_cost(nb, cost, lengths, np.array([400.0, np.nan]), k=2, power=1.0)
    np.testing.assert_allclose(adjusted, [[4.0, 6.0], [2.0, 3.0]])  # twice the mean length; unknown: plain mean
    np.testing.assert_allclose(length_adjusted_cost(nb, cost, lengths, None, 2, 1.0), [[2.0, 3.0]] * 2)


def test_leave_one_out_shrinks_hard_when_the_neighbours_carry_no_signal():
    vectors, _ = _clustered(10, 20)
    rng = np.random.default_rng(1)
    quality = (rng.random((200, 3)) < np.array([0.2, 0.5, 0.8])).astype(float)  # independent of the query
    table = ReferenceTable(quality, np.ones((200, 3)), np.full(200, 100.0), ("",) * 200)
    tuned = KernelShrink.tune(table, _index(vectors), k=5)
    assert tuned["strength"] >= 20 or tuned["k"] >= 50
    assert tuned["loo_brier"] < brier(np.repeat(quality.mean(axis=0, keepdims=True), 200, axis=0), quality) + 0.01


def test_leave_one_out_trusts_tight_neighbours_when_they_carry_the_signal():
    vectors, cluster = _clustered(10, 20)
    quality = np.stack([(cluster % 2).astype(float), (cluster % 3 == 0).astype(float)], axis=1)
    cost = np.ones((200, 2)) * np.linspace(1, 2, 200)[:, None]
    table = ReferenceTable(quality, cost, np.linspace(100, 200, 200), ("",) * 200)
    tuned = KernelShrink.tune(table, _index(vectors), k=5)
    assert tuned["k"] <= 20  # each cluster has 19 other members
    assert tuned["loo_brier"] < 0.02


@pytest.mark.parametrize(("proportional", "power"), [(True, 1.0), (False, 0.0)])
def test_leave_one_out_scales_costs_by_length_only_when_costs_follow_length(monkeypatch, proportional, power):
    monkeypatch.setitem(GRID, "length_power", (0.0, 0.5, 1.0))
    monkeypatch.setitem(GRID, "cost_k", (5, 10))
    vectors, cluster = _clustered(10, 20)
    lengths = np.random.default_rng(2).uniform(100, 1000, 200)
    cost = np.stack([lengths, 2 * lengths], axis=1) if proportional else np.ones((200, 2)) * (1 + cluster[:, None])
    table = ReferenceTable((cluster[:, None] % 2).astype(float), cost, lengths, ("",) * 200)
    assert KernelShrink.tune(table, _index(vectors), k=5)["length_power"] == power


def test_history_neighbours_never_include_the_row_itself():
    vectors, _ = _clustered(4, 10)
    nb = history_neighbours(_index(vectors), 5)
    assert nb.labels.shape == (40, 5)
    assert not np.any(nb.labels == np.arange(40)[:, None])
    assert np.all(np.diff(nb.similarity, axis=1) <= 1e-6)  # nearest first


def test_exact_neighbours_come_nearest_first():
    vectors, _ = _clustered(3, 10)
    nb = exact_neighbours(vectors[:5], vectors, 4)
    assert nb.labels[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert np.all(np.diff(nb.similarity, axis=1) <= 0)


def test_metrics_on_hand_checked_values():
    true = np.array([[1.0, 0.0]])
    assert brier(np.array([[0.5, 0.5]]), true) == pytest.approx(0.25)
    assert log_loss(np.array([[0.5, 0.5]]), true) == pytest.approx(np.log(2))
    assert np.isfinite(log_loss(np.array([[0.0, 1.0]]), true))  # clipped, not infinite
    assert mape(np.array([[2.0, 5.0]]), np.array([[1.0, 0.0]])) == pytest.approx(100.0)  # zero costs skipped


def test_manifest_records_the_tuned_estimator_and_round_trips(tmp_path):
    vectors, _ = _clustered(5, 10)
    index = _index(vectors)
    table = _table(n=50)
    tuned = KernelShrink.tune(table, index, k=5)
    index.manifest = index.manifest.with_estimator("kernel-shrink", KernelShrink.configuration(5), tuned)
    index.save(tmp_path)
    loaded = AnnIndex.load(tmp_path, IndexParams(), index.manifest)
    assert loaded.manifest == index.manifest
    loaded.manifest.check_estimator("kernel-shrink", KernelShrink.configuration(5), tmp_path)
    estimator = create_estimator(loaded.manifest.estimator, table, loaded.manifest.estimator_settings)
    assert estimator.settings == tuned


@pytest.mark.parametrize(("name", "k", "message"), [
    ("knn-mean", 5, "tuned for 'kernel-shrink'.*asks for 'knn-mean'"),
    ("kernel-shrink-task", 5, "asks for 'kernel-shrink-task'"),
])
def test_manifest_of_another_estimator_is_refused(name, k, message):
    manifest = IndexManifest("m", 2, 1, "h", 32, 200).with_estimator(
        "kernel-shrink", KernelShrink.configuration(5), {"k": 10})
    with pytest.raises(IndexMismatchError, match=message):
        manifest.check_estimator(name, estimator_class(name).configuration(k), "idx")


def test_manifest_of_other_parameters_or_without_an_estimator_is_refused():
    knn = estimator_class("knn-mean")
    manifest = IndexManifest("m", 2, 1, "h", 32, 200).with_estimator("knn-mean", knn.configuration(5), {"k": 5})
    manifest.check_estimator("knn-mean", knn.configuration(5), "idx")
    with pytest.raises(IndexMismatchError, match="'k': 5.*'k': 7"):
        manifest.check_estimator("knn-mean", knn.configuration(7), "idx")
    with pytest.raises(IndexMismatchError, match="records no estimator"):
        IndexManifest("m", 2, 1, "h", 32, 200).check_estimator("knn-mean", knn.configuration(5), "idx")


def test_default_estimator_is_registered():
    assert PortParams().estimator in ESTIMATORS
    assert set(GRID) == {"k", "temperature", "strength", "cost_k", "length_power"}
