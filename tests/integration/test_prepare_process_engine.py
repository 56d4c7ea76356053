"""The prepare process (``streams.service.prepare_process``) on the example configuration's real engine: it comes
up, and a batch it prepares (texts embedded, vectors as given, a dead letter) is the batch the router's own
process prepares."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np
import pytest

from streams.config import load_config
from streams.service.data import load_engine
from streams.service.messages import Record
from streams.service.prepare import Preparer
from streams.service.prepare_process import PrepareProcess

from stream_harness import DATA, random_queries, require, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UP_DEADLINE_S = 300.0  # loading the engine takes seconds on an idle machine; the machine is shared


def test_the_prepare_process_prepares_what_the_router_process_prepares(tmp_path: Path) -> None:
    require(DATA.is_dir(), f"the RouterBench subset is not at {DATA} (set PORT_ROUTER_DATA)")
    config = load_config(write_config(tmp_path, topics=False), {})
    local = Preparer(load_engine(config), "dlq")
    process = PrepareProcess(config, local)
    process.start()
    assert process.pool is not None and process.up is not None
    try:
        deadline = time.monotonic() + UP_DEADLINE_S
        while process.worker() is None:
            assert not (process.up.done() and process.up.exception()), f"it did not start: {process.up.exception()!r}"
            assert time.monotonic() < deadline, f"not up after {UP_DEADLINE_S:.0f}s"
            time.sleep(0.2)
        assert process.up.result() != os.getpid()  # another process
        records = [Record("queries", 0, i, q.id.encode(), q.model_dump_json().encode())
                   for i, q in enumerate(random_queries(9, "prepare", text_every=3))]
        records.append(Record("queries", 0, len(records), b"bad", b"{not json"))
        there = asyncio.run(process.prepare(records))
        here = local.prepare(records)
        assert [q.id for q in there.queries] == [q.id for q in here.queries] == [f"prepare-{i}" for i in range(9)]
        assert there.dead_reasons == here.dead_reasons and len(there.dead_reasons) == 1
        assert there.estimates is not None and here.estimates is not None
        np.testing.assert_allclose(there.estimates.quality, here.estimates.quality, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(there.estimates.cost, here.estimates.cost, rtol=1e-5, atol=1e-12)
        assert there.embed_seconds is not None  # it embedded the texts itself
    finally:
        process.pool.shutdown(cancel_futures=True)
