"""``port-router chaos``: a soak of the whole service under faults, on the real broker.

A stream of held-out RouterBench queries (with precomputed embeddings) goes through
``--routers`` routers on ``--partitions`` query partitions, with one replay worker per
model. While it flows, a seeded schedule kills a router with SIGKILL (during the
observation phase, mid-stream and near the end), stops another with SIGTERM, restarts the
broker once and pauses a worker; every stopped router is started again. At the end every
produced id must be in exactly one of ``routed.<one model>``, ``unserved`` or ``dlq``, no
id may have two different decisions, and the reservations must fit every budget share.
The table printed names each check; the exit status is 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import threading
import time
import urllib.error
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from schemas import QueryEvent
from streams.tools import processes
from streams.config import ServiceConfig, load_config
from streams.tools.outcomes import OutcomeTally, follow_outcomes
from streams.tools.processes import KAFKA_SCRIPT, REPO, ServiceProcess

log = logging.getLogger(__name__)
LIVENESS_S = 15.0  # how long a router's /health may fail before the soak restarts it, as a liveness probe would


def healthy(router: ServiceProcess) -> bool:
    """False only when the router answers /health with an error (a router still starting is not unhealthy)."""
    try:
        processes.get_json(router.url("/health"), timeout=3)
        return True
    except urllib.error.HTTPError:
        return False
    except OSError:
        return True


@dataclass(frozen=True)
class Fault:
    """One scheduled fault: at ``at`` seconds after the stream starts, ``action`` on ``target``."""

    at: float
    action: str  # sigkill-router | sigterm-router | restart-broker | pause-worker
    target: int  # router slot or worker index (unused for the broker)
    hold: float  # seconds before the restart / resume
    label: str


def schedule(seed: int, duration: float, routers: int, workers: int, observation_s: float) -> list[Fault]:
    """The faults of one soak, reproducible from ``seed``, for a stream lasting ``duration`` seconds."""
    rng = random.Random(seed)

    def slot() -> int:
        return rng.randrange(routers)

    faults = [
        Fault(rng.uniform(0.2, 1.0) * observation_s, "sigkill-router", slot(), rng.uniform(2, 5),
              "SIGKILL during the observation phase"),
        Fault(rng.uniform(0.25, 0.45) * duration, "sigkill-router", slot(), rng.uniform(2, 6), "SIGKILL mid-stream"),
        Fault(rng.uniform(0.5, 0.6) * duration, "sigterm-router", slot(), rng.uniform(1, 4), "SIGTERM and restart"),
        Fault(rng.uniform(0.65, 0.75) * duration, "restart-broker", 0, rng.uniform(2, 5), "broker restart"),
        Fault(rng.uniform(0.3, 0.8) * duration, "pause-worker", rng.randrange(workers), rng.uniform(5, 15),
              "worker paused (SIGSTOP/SIGCONT)"),
        Fault(rng.uniform(0.9, 1.0) * duration, "sigkill-router", slot(), rng.uniform(2, 5),
              "SIGKILL near the end of the stream"),
    ]
    return sorted(faults, key=lambda f: f.at)


@dataclass
class SoakReport:
    """What one soak found."""

    seed: int
    produced: int
    routed: int
    unserved: int
    dlq: int
    lost: int
    decided_twice: int
    re_emitted: int
    budget_overruns: int
    max_share_used: float
    longest_stall_s: float
    stall_began_s: float  # seconds after the first query was produced
    faults: list[str] = field(default_factory=list)
    unplanned_restarts: list[str] = field(default_factory=list)  # restarted by the supervisor

    def ok(self) -> bool:
        """No loss, no double decision, no overspent share."""
        return self.lost == 0 and self.decided_twice == 0 and self.budget_overruns == 0


def decisions_by_id(tally: OutcomeTally) -> dict[str, set[str]]:
    """Each query id's distinct decisions ('routed:<model>' or 'unserved')."""
    decided: dict[str, set[str]] = {}
    for message in tally.routed_messages:
        decided.setdefault(message["query"]["id"], set()).add(f"routed:{message['model']}")
    for query_id, kinds in tally.placements.items():
        if "unserved" in kinds:
            decided.setdefault(query_id, set()).add("unserved")
    return decided


def share_usage(config: ServiceConfig, tally: OutcomeTally) -> tuple[int, float]:
    """(number of models whose charges over all input partitions exceed the budget B_i, the largest fraction
    of a budget used).

    A query is routed only if its reservation fits in what its partition's share has left, counting the
    other queries at their reservation until their completion arrives and at their actual cost after, and a
    worker never spends more than a reservation; the optimizer reassigns the shares so that what all
    partitions may use stays within B_i (streams/service/shares.py). So the sum over routed queries of the
    actual cost (the reservation while no completion arrived) can never exceed the budget: that is checked.
    A partition may use more than B_i / P once shares are reassigned."""
    charged: dict[str, float] = {}
    first: dict[str, dict[str, Any]] = {}
    for message in tally.routed_messages:
        first.setdefault(message["query"]["id"], message)
    for query_id, message in first.items():
        completion = tally.completions.get(query_id)
        cost = message["reserved_cost"] if completion is None else completion["cost"]
        charged[message["model"]] = charged.get(message["model"], 0.0) + cost
    used = [(dollars, config.model(model).budget) for model, dollars in charged.items()]
    overruns = sum(1 for dollars, share in used if dollars > share * (1 + 1e-9))
    return overruns, max((d / s for d, s in used if s > 0), default=0.0)


def longest_stall(produced: list[float], decided: list[float]) -> tuple[float, float]:
    """(the longest time during which a produced query waited for a decision and none was made,
    the moment it began).

    After k decisions, some query is pending from the moment the (k+1)-th query was produced;
    the wait ends with decision k+1.
    """
    produced, decided = sorted(produced), sorted(decided)
    longest, began, previous = 0.0, 0.0, float("-inf")
    for k, moment in enumerate(decided):
        if k < len(produced):
            start = max(previous, produced[k])
            if moment - start > longest:
                longest, began = moment - start, start
        previous = moment
    return round(longest, 2), began


def first_decision_times(tally: OutcomeTally) -> list[float]:
    """The time of each query's first decision (routed_at or decided_at)."""
    times: dict[str, float] = {}
    for message in tally.routed_messages:
        times.setdefault(message["query"]["id"], message["routed_at"])
    for message in tally.unserved_messages:
        times.setdefault(message["query_id"], message["decided_at"])
    return list(times.values())


def report(seed: int, config: ServiceConfig, tally: OutcomeTally, produced_at: dict[str, float],
           faults: list[str], unplanned: list[str]) -> SoakReport:
    """Check the outcome of one soak."""
    decided = decisions_by_id(tally)
    overruns, max_used = share_usage(config, tally)
    first_routed = {m["query"]["id"] for m in tally.routed_messages}
    stall, began = longest_stall(list(produced_at.values()), first_decision_times(tally))
    started = min(produced_at.values(), default=0.0)
    return SoakReport(
        seed=seed, produced=len(produced_at), routed=sum(tally.routed.values()), unserved=tally.unserved,
        dlq=tally.dlq, lost=len(set(produced_at) - set(decided)),
        decided_twice=sum(1 for kinds in decided.values() if len(kinds) > 1),
        re_emitted=len(tally.routed_messages) - len(first_routed) + len(tally.unserved_messages) - tally.unserved,
        budget_overruns=overruns, max_share_used=round(max_used, 4),
        longest_stall_s=stall, stall_began_s=round(began - started, 1), faults=faults,
        unplanned_restarts=unplanned)


class Soak:
    """One soak: the processes, the fault schedule and the stream."""

    def __init__(self, args: argparse.Namespace, seed: int) -> None:
        self.args = args
        self.seed = seed
        self.log_dir = Path(args.log_dir) / f"seed-{seed}"
        prefix = f"chaos{seed}x{uuid.uuid4().hex[:6]}."
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "PORT_ROUTER__TOPICS__PREFIX": prefix,
                    "PORT_ROUTER__TOPICS__QUERY_PARTITIONS": str(args.partitions),
                    "PORT_ROUTER__PORT__N_EXPECTED": str(args.queries),
                    "PORT_ROUTER__ROUTER__STALL_TIMEOUT_S": str(args.stall_timeout)}
        self.config = load_config(args.config, self.env)
        self.routers: list[ServiceProcess] = []
        self.workers: list[ServiceProcess] = []
        self.slots = [threading.Lock() for _ in range(args.routers)]  # one fault at a time per router
        self.unplanned: list[str] = []  # processes that exited by themselves and were started again

    def start_router(self, slot: int) -> None:
        """Start (or start again) the router in ``slot``."""
        process = processes.router(self.args.config, self.log_dir / f"router{slot}.log", f"router {slot}",
                                   env=self.env).start()
        if slot < len(self.routers):
            self.routers[slot] = process
        else:
            self.routers.append(process)

    def inject(self, fault: Fault, started: float, done: list[str]) -> None:
        """Wait for ``fault``'s moment, inject it, undo it after its hold time; note it in ``done``."""
        time.sleep(max(0.0, started + fault.at - time.monotonic()))
        at = time.monotonic() - started
        self.apply(fault)
        target = f" (router {fault.target})" if "router" in fault.action else ""
        done.append(f"{at:6.1f}s {fault.label}{target}, back after {time.monotonic() - started - at:.1f}s")

    def supervise(self, producer: threading.Thread, faults: list[threading.Thread]) -> None:
        """Act as the orchestrator would, until the stream and the faults are over: start again a router or
        worker that exited outside a fault (e.g. one started while the broker was down), and restart a router
        whose /health has failed for ``LIVENESS_S`` (the liveness probe)."""
        failing_since: dict[int, float] = {}
        while producer.is_alive() or any(thread.is_alive() for thread in faults):
            for slot, lock in enumerate(self.slots):
                if not lock.acquire(blocking=False):
                    continue  # a fault is acting on this router
                try:
                    router = self.routers[slot]
                    if not router.alive():
                        self.restart_router(slot, "exited by itself")
                    elif healthy(router):
                        failing_since.pop(slot, None)
                    elif time.monotonic() - failing_since.setdefault(slot, time.monotonic()) > LIVENESS_S:
                        failing_since.pop(slot)
                        router.stop(signal.SIGTERM)
                        self.restart_router(slot, f"failed its liveness check (/health) for {LIVENESS_S:.0f}s")
                finally:
                    lock.release()
            for i, worker in enumerate(self.workers):
                if not worker.alive():
                    self.unplanned.append(f"{worker.name} (exited by itself)")
                    log.warning("chaos: %s exited by itself; starting it again", worker.name)
                    self.workers[i] = processes.worker(self.args.config, self.config.models[i].name,
                                                       worker.log_path, self.env).start()
            time.sleep(1.0)

    def restart_router(self, slot: int, why: str) -> None:
        """Start the router in ``slot`` again outside the fault schedule, noting ``why``."""
        self.unplanned.append(f"router {slot} ({why})")
        log.warning("chaos: router %d %s; starting it again", slot, why)
        self.start_router(slot)

    def apply(self, fault: Fault) -> None:
        """Inject ``fault`` and undo it after its hold time."""
        log.info("chaos: %s (%s)", fault.label, fault.action)
        if fault.action in ("sigkill-router", "sigterm-router"):
            sig = signal.SIGKILL if fault.action == "sigkill-router" else signal.SIGTERM
            with self.slots[fault.target]:
                self.routers[fault.target].stop(sig)
                time.sleep(fault.hold)
                self.start_router(fault.target)
        elif fault.action == "restart-broker":
            port = self.config.kafka.bootstrap_servers.rsplit(":", 1)[-1]
            env = {**os.environ, "KAFKA_PORT": port}
            subprocess.run([str(KAFKA_SCRIPT), "stop"], check=True, env=env, timeout=180)
            time.sleep(fault.hold)
            subprocess.run([str(KAFKA_SCRIPT), "start", "--keep"], check=True, env=env, timeout=180)
        elif fault.action == "pause-worker":
            worker = self.workers[fault.target]
            worker.send(signal.SIGSTOP)
            time.sleep(fault.hold)
            worker.send(signal.SIGCONT)

    def run(self, queries: list[QueryEvent]) -> SoakReport:
        """Run the soak on ``queries``; return its report (processes stopped at the end)."""
        from streams.tools.produce import publish
        from streams.topics import create_topics

        create_topics(self.config)
        try:
            for slot in range(self.args.routers):
                self.start_router(slot)
            for router in self.routers:
                router.wait_ready(timeout=self.args.timeout)
            for i, model in enumerate(self.config.models):
                self.workers.append(processes.worker(self.args.config, model.name,
                                                     self.log_dir / f"worker{i}.log", self.env).start())
            duration = len(queries) / self.args.rate
            observation_s = max(self.config.port.n_expected * self.config.port.eps / self.args.rate, 0.5)
            faults = schedule(self.seed, duration, self.args.routers, len(self.workers), observation_s)
            if self.args.no_broker_restart:
                faults = [f for f in faults if f.action != "restart-broker"]
            produced_at: dict[str, float] = {}
            failures: list[BaseException] = []

            def produce() -> None:
                try:  # the broker restart can hold acknowledgements back for a while: wait as long as for outcomes
                    publish(self.config, queries, len(queries), self.args.rate, False, self.args.timeout, produced_at)
                except Exception as exc:  # reported below: a query never acknowledged is not the router's loss
                    failures.append(exc)

            producer = threading.Thread(target=produce, name="chaos-producer")
            started = time.monotonic()
            producer.start()
            done: list[str] = []
            threads = [threading.Thread(target=self.inject, args=(fault, started, done), name=fault.action)
                       for fault in faults]
            supervisor = threading.Thread(target=self.supervise, args=(producer, threads), name="supervisor")
            for thread in [*threads, supervisor]:
                thread.start()
            for thread in [*threads, supervisor]:
                thread.join()
            producer.join()
            if failures:
                raise RuntimeError(f"the soak's producer failed, so the stream is incomplete: {failures[0]}")
            tally = follow_outcomes(self.config, len(queries), timeout=self.args.timeout)
            return report(self.seed, self.config, tally, produced_at, sorted(done), self.unplanned)
        finally:
            processes.stop_all(self.routers + self.workers)


def soak_queries(config: ServiceConfig, count: int, seed: int) -> list[QueryEvent]:
    """``count`` held-out queries (the stream cycled, ids unique per soak) with precomputed embeddings."""
    from streams.service.data import load_assembly

    assembly = load_assembly(config)
    stream = assembly.held_out
    if stream is None:
        raise RuntimeError("chaos needs history_rows in the configuration (a held-out query stream)")
    vectors = assembly.held_out_vectors()
    rows = [i % len(stream) for i in range(count)]
    return [QueryEvent(id=f"c{seed}r{i // len(stream)}:{stream.ids[r]}", embedding=[float(x) for x in vectors[r]])
            for i, r in enumerate(rows)]


def print_reports(reports: list[SoakReport], emit: Callable[[str], None] = print) -> None:
    """The table of checks, one row per seed, then each seed's faults."""
    header = ("seed", "produced", "routed", "unserved", "dlq", "lost", "decided twice", "re-emitted",
              "budgets over", "max budget used", "longest stall s (at)", "result")
    emit("| " + " | ".join(header) + " |")
    emit("|" + "---|" * len(header))
    for r in reports:
        emit("| " + " | ".join(str(v) for v in (r.seed, r.produced, r.routed, r.unserved, r.dlq, r.lost,
                                                 r.decided_twice, r.re_emitted, r.budget_overruns, r.max_share_used,
                                                 f"{r.longest_stall_s} ({r.stall_began_s}s)", "pass" if r.ok() else "FAIL")) + " |")
    for r in reports:
        emit(f"seed {r.seed} faults: " + "; ".join(fault.strip() for fault in r.faults))
        if r.unplanned_restarts:
            emit(f"seed {r.seed} restarted outside the schedule: " + ", ".join(r.unplanned_restarts))


def run_chaos(args: argparse.Namespace) -> int:
    """Run one soak per seed; print the table; 0 when every soak passed."""
    processes.exit_on_sigterm()  # a SIGTERM stops the processes this command started, then exits
    reports = []
    for seed in args.seeds:
        soak = Soak(args, seed)
        queries = soak_queries(soak.config, args.queries, seed)
        reports.append(soak.run(queries))
        print_reports(reports[-1:])
    if len(reports) > 1:
        print_reports(reports)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in reports], indent=2) + "\n")
    return 0 if all(r.ok() for r in reports) else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``chaos`` command's options."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="one soak per seed (the fault schedule)")
    parser.add_argument("--queries", type=int, default=3000, help="queries per soak")
    parser.add_argument("--rate", type=float, default=40.0, help="queries produced per second")
    parser.add_argument("--routers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the queries topic")
    parser.add_argument("--stall-timeout", type=float, default=20.0, help="the routers' router.stall_timeout_s")
    parser.add_argument("--timeout", type=float, default=300.0, help="limit for each wait (seconds)")
    parser.add_argument("--no-broker-restart", action="store_true",
                        help="skip the broker restart (a broker not started by scripts/kafka.sh)")
    parser.add_argument("--log-dir", default=str(REPO / ".cache" / "chaos-logs"))
    parser.add_argument("--json", help="write the reports here")
