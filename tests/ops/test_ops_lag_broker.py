"""Consumer lag read from the real broker (scripts/kafka.sh start): committed offsets vs watermarks."""

from __future__ import annotations

import argparse
import re
import uuid

import pytest

from streams import consumer_lag
from streams import metrics as m

pytestmark = pytest.mark.integration


@pytest.fixture()
def topic_with_group(bootstrap: str):
    """A fresh 2-partition topic with 5 + 3 messages and a group that committed offset 2 on partition 0."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    suffix = uuid.uuid4().hex[:8]
    topic, group = f"ops-test.lag.{suffix}", f"ops-test.group.{suffix}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, count in ((0, 5), (1, 3)):
        for i in range(count):
            producer.produce(topic, value=f"message {i}".encode(), partition=partition)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    consumer.close()
    yield topic, group
    admin.delete_topics([topic])[topic].result(30)
    admin.delete_consumer_groups([group])[group].result(30)


def test_lag_reader_and_monitor_against_the_broker(bootstrap: str, topic_with_group: tuple[str, str]) -> None:
    topic, group = topic_with_group
    reader = consumer_lag.LagReader({"bootstrap.servers": bootstrap})
    assert group in reader.groups("ops-test.group.")
    rows = {(r.topic, r.partition): r for r in reader.read([group])}
    assert set(rows) == {(topic, 0), (topic, 1)}
    assert (rows[topic, 0].committed, rows[topic, 0].high, rows[topic, 0].lag) == (2, 5, 3)
    assert (rows[topic, 1].committed, rows[topic, 1].high, rows[topic, 1].lag) == (None, 3, 3)

    m.LagMonitor(reader, group_prefix=group).poll()
    for partition in ("0", "1"):
        exported = m.REGISTRY.get_sample_value("port_router_consumer_lag_messages",
                                               {"group": group, "topic": topic, "partition": partition})
        assert exported == 3


def test_lag_command_prints_the_table(bootstrap: str, topic_with_group: tuple[str, str], capsys) -> None:
    from streams.tools import lag

    topic, group = topic_with_group
    parser = argparse.ArgumentParser()
    lag.add_arguments(parser)
    assert lag.run(parser.parse_args(["--bootstrap-servers", bootstrap, "--group", group])) == 0
    out = capsys.readouterr().out
    assert "ops-test" in out
    assert re.search(r"│\s+all\s+│.*│\s+6\s+│", out), out


def test_lag_command_reports_an_unreachable_broker(capsys) -> None:
    from streams.tools import lag

    parser = argparse.ArgumentParser()
    lag.add_arguments(parser)
    assert lag.run(parser.parse_args(["--bootstrap-servers", "127.0.0.1:1", "--timeout", "2"])) == 1
    assert "port-router lag:" in capsys.readouterr().out
