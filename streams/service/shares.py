"""Per-partition budget shares that the optimizer reassigns with each weights version (pure arithmetic).

A router reserves for input partition p only within p's share of the weights version it follows
(weights without shares: B_i / P; before any weights, "version 0": B_i / P). Versions reach the
routers asynchronously and routers crash, so at one moment the partitions may follow different
versions. The optimizer therefore bounds what each partition may still have used at any time:

    cap_p = max(used_p, max over the versions v >= acked_p of share_p(v))     (per model)

where ``acked_p`` is the version of p's newest observation (a router never routes p with weights
older than a version p's state already used: the fence) and ``used_p`` the reserved + settled
dollars that observation reported. After that observation p only reserves under versions at or
after ``acked_p``, each reservation within that version's share, and settlements never add
(a worker spends at most the reservation), so p's use stays within cap_p. A new version's shares
are published only when sum_p max(cap_p, share_p) <= B_i: a giver's decrease lowers its cap only
once p acknowledges it, and only then can a taker's increase use the freed dollars. Any mix of
applied versions, and a crash anywhere, therefore keeps sum_p used_p <= B_i.

Shares are reassigned only with a version, so between two versions a partition whose share of a model ran out
cannot reach what another partition holds of it: then the query is handed over (``handover_targets``). A router
that would route a query to another model than the one it wants with the budgets of all partitions pooled sends
the query back to the input topic, on the partition with the most room left for that model as the weights record
saw it; the router of that partition decides it (once: a handed-over query is never handed over again) within its
own share. A handover moves a query, never money, so the bound above is untouched.

The state that makes the bound survive an optimizer restart (each partition's acknowledged
version and the shares of the versions at or after it) travels in every weights record.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

MAX_STEPS = 8  # shares kept per partition; older ones merge into a conservative (larger) one
CHUNK = 2.0  # a part of a model's leftover below this many mean estimated costs is too small to split off
EVEN_PRIOR = 100  # decisions: until the window holds this many, the shortfall counts as spread evenly


@dataclass
class PartitionShares:
    """One partition's acknowledged version, its reported use, and the shares of the versions since."""

    acked: int
    used: np.ndarray
    steps: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (version, share), versions increasing

    def cap(self) -> np.ndarray:
        """The most this partition may have used now or later, per model."""
        bound = self.used.copy()
        for version, share in self.steps:
            if version >= self.acked:
                bound = np.maximum(bound, share)
        return bound

    def observe(self, version: int, used: np.ndarray) -> None:
        """The partition's newest observation: it follows ``version`` and has used ``used``."""
        self.acked = max(self.acked, version)
        self.used = np.asarray(used, dtype=np.float64)
        self.steps = [(v, s) for v, s in self.steps if v >= self.acked]

    def add(self, version: int, share: np.ndarray) -> None:
        """Record the share of a newly published version (bounded: the oldest two merge into their maximum,
        kept under the newer of the two versions, which can only overstate the cap)."""
        self.steps.append((version, np.asarray(share, dtype=np.float64)))
        if len(self.steps) > MAX_STEPS:
            (_, s0), (v1, s1) = self.steps[0], self.steps[1]
            self.steps[:2] = [(v1, np.maximum(s0, s1))]


class ShareBook:
    """The optimizer's view of every partition's share bound; proposes the next version's shares.

    Shares are split by each partition's recent decision rate: every partition keeps what it has
    used, and what is left of B_i is divided in proportion to the partition's part of the last
    ``window`` decisions (plus one, so that an idle partition keeps a small share to start from; and
    while fewer than ``EVEN_PRIOR`` decisions (at most the window) were seen, the missing ones count as spread evenly, so
    that the first few decisions, often all from one partition, do not starve the others).
    Traffic is keyed by query id, so the rate is what predicts where the next queries, and
    therefore the next reservations, arrive. Except when what is left of B_i is small: divided,
    each part would be less than ``CHUNK`` times the model's mean estimated cost over the window
    (a part that small fits few or no reservations, and the money would be stranded in every
    partition), so all that is left goes to one partition, the one already holding the most of it
    (so that it does not move back and forth between versions).
    """

    def __init__(self, budgets: np.ndarray, partitions: int, window: int = 1000) -> None:
        self.budgets = np.asarray(budgets, dtype=np.float64)
        self.partitions = partitions
        base = self.budgets / partitions
        zero = np.zeros_like(self.budgets)
        self.parts = [PartitionShares(0, zero.copy(), [(0, base.copy())]) for _ in range(partitions)]
        self.recent: deque[int] = deque(maxlen=window)
        self.costs: deque[np.ndarray] = deque(maxlen=window)  # estimated costs of the recent decisions

    def observe(self, partition: int, version: int, used: np.ndarray | None, cost: np.ndarray | None) -> None:
        """Account for one observation of ``partition`` (following ``version``, 0 for none; ``used`` its
        reported use, None to keep the last; ``cost`` the estimated cost per model of the decision it reports,
        (M,), or of each of several, (n, M); None for an acknowledgement that reports no decision)."""
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} is outside the {self.partitions} input partitions")
        part = self.parts[partition]
        part.observe(version, part.used if used is None else used)
        for row in ([] if cost is None else np.atleast_2d(np.asarray(cost, dtype=np.float64))):
            self.recent.append(partition)
            self.costs.append(row)

    def used(self) -> np.ndarray:
        """(P, M): every partition's newest reported use."""
        return np.stack([p.used for p in self.parts])

    def caps(self) -> np.ndarray:
        """(P, M): what every partition may have used, whatever version it applies now or next."""
        return np.stack([p.cap() for p in self.parts])

    def rates(self) -> np.ndarray:
        """(P,): each partition's part of the recent decisions, smoothed (sums to 1)."""
        counts = np.bincount(np.asarray(self.recent, dtype=np.int64), minlength=self.partitions)[:self.partitions]
        unseen = max(min(EVEN_PRIOR, self.recent.maxlen or 0) - len(self.recent), 0)
        smoothed = counts + 1.0 + unseen / self.partitions
        return smoothed / smoothed.sum()

    def propose(self) -> np.ndarray:
        """(P, M): the next version's shares. Targets: used + (B - total used) x rate. A partition below its
        cap gets its target at once (a decrease); an increase beyond the cap only takes from the headroom
        B - sum of caps, in proportion to what each taker lacks, so sum_p max(cap_p, share_p) <= B."""
        caps, used = self.caps(), self.used()
        left = np.maximum(self.budgets - used.sum(axis=0), 0.0)
        target = used + self.rates()[:, None] * left[None, :]
        chunk = CHUNK * (np.mean(self.costs, axis=0) if self.costs else np.zeros_like(self.budgets))
        holder = np.argmax(caps - used, axis=0)
        for model in np.flatnonzero(left < self.partitions * chunk):
            target[:, model] = used[:, model]
            target[holder[model], model] += left[model]
        shares = np.minimum(target, caps)
        lack = np.maximum(target - caps, 0.0)
        headroom = np.maximum(self.budgets - caps.sum(axis=0), 0.0)
        need = lack.sum(axis=0)
        fraction = np.divide(headroom, need, out=np.ones_like(need), where=need > 0)
        shares += lack * np.minimum(fraction, 1.0)[None, :]
        return shares

    def restart_period(self, last_version: int) -> None:
        """A new budget period starts: nothing used in it yet, and a partition that still follows a version of the
        closed period (up to ``last_version``) routes within B_i / P in the new one (``Router.share_of``), so that
        is its cap until it acknowledges a version of the new period."""
        base = self.budgets / self.partitions
        for part in self.parts:
            part.used = np.zeros_like(self.budgets)
            part.steps = [(last_version, base.copy())]

    def publish(self, version: int, shares: np.ndarray) -> None:
        """Record that ``version`` carries ``shares`` (ValueError if they could break the bound)."""
        after = np.maximum(self.caps(), shares).sum(axis=0)
        if np.any(after > self.budgets * (1 + 1e-12) + 1e-12):
            raise ValueError(f"shares of v{version} would let the partitions use {after.tolist()} > {self.budgets.tolist()}")
        for part, share in zip(self.parts, shares):
            part.add(version, share)

    def state(self) -> tuple[list[int], list[list[tuple[int, list[float]]]]]:
        """(acknowledged version per partition, the (version, share) steps per partition): what a restarted
        optimizer needs besides the used dollars (the weights record's ``partition_spent``)."""
        return ([p.acked for p in self.parts],
                [[(v, s.tolist()) for v, s in p.steps] for p in self.parts])

    def restore_even(self, version: int, used: list[list[float]]) -> None:
        """Take up weights ``version`` that carry no share state (an operator's): every partition at B_i / P under
        every version (its cap), with the used dollars given."""
        even = (self.budgets / self.partitions).tolist()
        self.restore([0] * self.partitions, [[(0, even), (version, even)] for _ in range(self.partitions)], used)

    def restore(self, acked: list[int], steps: list[list[tuple[int, list[float]]]], used: list[list[float]]) -> None:
        """Take up a state written by ``state`` (and the used dollars) after a restart."""
        zero = np.zeros_like(self.budgets)
        for p, part in enumerate(self.parts):
            part.acked = acked[p] if p < len(acked) else 0
            part.used = np.asarray(used[p], dtype=np.float64) if p < len(used) else zero.copy()
            part.steps = [(int(v), np.asarray(s, dtype=np.float64)) for v, s in (steps[p] if p < len(steps) else [])]


def handover_targets(choose: Callable[[np.ndarray], np.ndarray], cost: np.ndarray, remaining: np.ndarray,
                     headroom: np.ndarray, reserve_factor: float, eligible: np.ndarray) -> np.ndarray:
    """Per query of a batch, the input partition to hand it over to, or -1 to decide it here.

    ``choose(budgets)`` gives the batch's choices under budgets (M,) left; ``cost`` (n, M) the estimated costs;
    ``remaining`` (M,) this partition's share left; ``headroom`` (P, M) what each partition could still reserve
    (this one's row -inf); ``eligible`` (n,) which queries may move. Budgets are compared in reservations
    (``reserve_factor`` x the estimated cost). A query moves when its choice with every partition's room pooled is a
    model it cannot reserve here, to the partition with the most room for that model if that room covers the
    reservation, which is then counted as taken.
    """
    targets = np.full(len(cost), -1, dtype=np.int64)
    if not np.any(eligible) or not np.any(headroom > 0):
        return targets
    here = choose(remaining / reserve_factor)
    wanted = choose((remaining + np.maximum(headroom, 0.0).sum(axis=0)) / reserve_factor)
    room = headroom.copy()
    for j in np.flatnonzero(eligible & (wanted >= 0) & (wanted != here)):
        model = int(wanted[j])
        target = int(np.argmax(room[:, model]))
        need = reserve_factor * float(cost[j, model])
        if room[target, model] >= need:
            targets[j] = target
            room[target, model] -= need
    return targets
