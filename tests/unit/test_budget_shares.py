"""Reassigned budget shares (streams/service/shares.py): what partitions may spend never exceeds B_i,
whatever mix of versions they apply, with crashes of the optimizer and of routers at any point."""

from __future__ import annotations

import numpy as np
import pytest

from streams.service.shares import EVEN_PRIOR, MAX_STEPS, ShareBook


def test_a_giver_decrease_is_acknowledged_before_a_taker_gets_more() -> None:
    book = ShareBook(np.array([10.0]), 2)
    for _ in range(EVEN_PRIOR):
        book.observe(0, 0, np.array([5.0]), np.array([0.01]))  # partition 0 has used its whole B/P; 1 is idle
    first = book.propose()
    assert first[0, 0] == pytest.approx(5.0) and first[1, 0] < 0.5  # 1 gives, 0 cannot take yet: 1's cap is 5
    book.publish(1, first)
    assert book.propose()[0, 0] == pytest.approx(5.0)  # still no acknowledgement from partition 1
    book.observe(1, 1, np.array([0.0]), None)  # partition 1 follows v1 now (an idle acknowledgement)
    second = book.propose()
    assert second[0, 0] > 9.0
    book.publish(2, second)
    assert book.caps().sum() <= 10.0 + 1e-9


def test_publish_refuses_shares_that_could_exceed_the_budget() -> None:
    book = ShareBook(np.array([10.0, 4.0]), 2)
    with pytest.raises(ValueError, match="would let the partitions use"):
        book.publish(1, np.array([[6.0, 2.0], [5.0, 2.0]]))  # partition 1 may still spend its B/P = 5


def test_steps_stay_bounded_and_only_overstate_the_cap() -> None:
    book = ShareBook(np.array([10.0]), 2)
    for version in range(1, 3 * MAX_STEPS):
        shares = np.array([[5.0 - version * 0.1], [5.0 - version * 0.1]])
        book.publish(version, shares)
        assert len(book.parts[0].steps) <= MAX_STEPS
        assert book.caps()[0, 0] == pytest.approx(5.0)  # nothing acknowledged: the B/P of version 0 still binds


class Cluster:
    """Routers applying versions at their own pace and spending within the share of the version they follow,
    one ordered observations log, and an optimizer that may crash and resume from its newest record."""

    def __init__(self, rng: np.random.Generator, budgets: np.ndarray, partitions: int) -> None:
        self.rng, self.budgets, self.partitions = rng, budgets, partitions
        self.versions = [budgets[None, :] / partitions * np.ones((partitions, 1))]  # version 0: B/P
        self.applied = [0] * partitions
        self.used = np.zeros((partitions, len(budgets)))
        self.log: list[tuple[int, int, np.ndarray, bool]] = []
        self.book = ShareBook(budgets, partitions, window=50)
        self.read = 0
        self.record = (self.book.state(), self.book.used().tolist(), 0)  # the newest weights record

    def spend(self, p: int) -> None:
        model = int(self.rng.integers(len(self.budgets)))
        amount = float(self.rng.uniform(0.0, 0.3))
        if self.used[p, model] + amount <= self.versions[self.applied[p]][p, model]:
            self.used[p, model] += amount
        self.log.append((p, self.applied[p], self.used[p].copy(), True))

    def settle(self, p: int) -> None:
        self.used[p] *= self.rng.uniform(0.8, 1.0)  # an answer costs at most its reservation

    def apply(self, p: int) -> None:
        newer = range(self.applied[p], len(self.versions))  # a lagging watcher: any version not older (the fence)
        self.applied[p] = int(self.rng.choice(newer))
        self.log.append((p, self.applied[p], self.used[p].copy(), False))

    def consume(self) -> None:
        stop = min(len(self.log), self.read + int(self.rng.integers(1, 6)))
        for p, version, used, decided in self.log[self.read:stop]:
            self.book.observe(p, version, used, np.full(len(self.budgets), 0.1) if decided else None)
        self.read = stop

    def publish(self) -> None:
        shares = self.book.propose()
        self.book.publish(len(self.versions), shares)
        self.versions.append(shares)
        self.record = (self.book.state(), self.book.used().tolist(), self.read)

    def restart_optimizer(self) -> None:
        (acked, steps), used, offset = self.record
        self.book = ShareBook(self.budgets, self.partitions, window=50)
        self.book.restore(acked, steps, used)
        self.read = offset
        self.consume()


@pytest.mark.parametrize("seed", range(20))
def test_mixed_versions_and_crashes_never_let_the_partitions_spend_more_than_the_budget(seed: int) -> None:
    rng = np.random.default_rng(seed)
    budgets = np.array([6.0, 3.0])
    cluster = Cluster(rng, budgets, 3)
    hot = int(rng.integers(3))
    for _ in range(3000):
        p = hot if rng.random() < 0.7 else int(rng.integers(3))
        action = rng.choice(["spend", "settle", "apply", "consume", "publish", "crash"], p=[.4, .1, .15, .2, .12, .03])
        if action == "spend":
            cluster.spend(p)
        elif action == "settle":
            cluster.settle(p)
        elif action == "apply":
            cluster.apply(p)
        elif action == "consume":
            cluster.consume()
        elif action == "publish":
            cluster.publish()
        else:
            cluster.restart_optimizer()
        assert np.all(cluster.used.sum(axis=0) <= budgets + 1e-9)
        assert np.all(cluster.book.caps().sum(axis=0) <= budgets + 1e-9)
    assert len(cluster.versions) > 50


def test_all_traffic_on_one_partition_gets_more_than_its_fixed_share() -> None:
    rng = np.random.default_rng(0)
    budgets = np.array([6.0, 3.0])
    cluster = Cluster(rng, budgets, 3)
    for _ in range(2000):
        cluster.spend(0)
        for p in range(3):
            cluster.apply(p)
        cluster.consume()
        cluster.publish()
    assert np.all(cluster.used[0] > budgets / 3 * 1.5)
    assert np.all(cluster.used.sum(axis=0) <= budgets + 1e-9)


def test_a_small_leftover_goes_whole_to_the_partition_holding_most_of_it() -> None:
    book = ShareBook(np.array([1.0, 100.0]), 2)
    book.observe(0, 0, np.array([0.1, 10.0]), np.array([0.4, 0.4]))  # model 0: 0.9 left, under 2 x 2 x 0.4
    book.observe(1, 0, np.array([0.2, 10.0]), np.array([0.4, 0.4]))
    first = book.propose()
    assert first[1, 0] == pytest.approx(0.2) and first[0, 0] == pytest.approx(0.5)  # 1 gives; 0 waits for the ack
    assert first[0, 1] == pytest.approx(10.0 + 40.0) and first[1, 1] == pytest.approx(10.0 + 40.0)  # split by rate
    book.publish(1, first)
    book.observe(1, 1, None, None)
    second = book.propose()
    assert second[0, 0] == pytest.approx(0.8) and second[1, 0] == pytest.approx(0.2)  # all of the 0.7 left in 0


def test_an_observation_of_several_decisions_counts_each_for_the_rates() -> None:
    book = ShareBook(np.array([10.0]), 2, window=100)
    book.observe(0, 0, np.array([1.0]), np.full((99, 1), 0.1))  # one event for a batch of 99 decisions
    book.observe(1, 0, np.array([1.0]), np.array([0.1]))
    assert book.rates().tolist() == pytest.approx([100 / 102, 2 / 102])


def test_the_first_few_decisions_do_not_starve_the_partitions_they_missed() -> None:
    book = ShareBook(np.array([10.0]), 2, window=1000)
    book.observe(1, 0, np.array([0.0]), np.full((5, 1), 0.1))  # the first solve's sample: 5 decisions, all on 1
    unseen = EVEN_PRIOR - 5  # counted as spread evenly
    assert book.rates().tolist() == pytest.approx([(1 + unseen / 2) / (7 + unseen), (6 + unseen / 2) / (7 + unseen)])
    assert book.propose()[0, 0] > 4.5  # partition 0 keeps nearly its B/P
    small = ShareBook(np.array([10.0]), 2, window=10)  # a window smaller than the prior: the window is the prior
    small.observe(1, 0, np.array([0.0]), np.full((10, 1), 0.1))
    assert small.rates().tolist() == pytest.approx([1 / 12, 11 / 12])


def test_a_new_period_starts_every_partition_at_its_fixed_share_until_it_acknowledges_a_new_version() -> None:
    book = ShareBook(np.array([10.0]), 2)
    for _ in range(EVEN_PRIOR):
        book.observe(0, 0, np.array([5.0]), np.array([0.01]))
    book.observe(1, 0, np.array([0.0]), None)
    book.publish(1, book.propose())
    book.observe(1, 1, np.array([0.0]), None)
    book.publish(2, book.propose())
    assert book.caps()[0, 0] > 9.0  # partition 0 took most of the closed period's budget
    book.restart_period(2)  # routers still following v1 or v2 in the new period route within B/P
    assert book.used().sum() == 0.0 and book.caps()[:, 0].tolist() == [5.0, 5.0]
    shares = book.propose()
    book.publish(3, shares)
    assert np.maximum(book.caps(), shares).sum() <= 10.0 + 1e-9
    book.observe(0, 3, np.array([1.0]), np.array([0.01]))  # partition 0 follows a version of the new period
    assert book.caps()[0, 0] == pytest.approx(max(1.0, shares[0, 0]))
