"""The deliverer's consumer config (static membership per worker slot), liveness, shutdown."""

from __future__ import annotations

import time

from stream.config import Settings
from stream.core.errors import KafkaError
from stream.deliver.process import consumer_config
from stream.deliver.stage import Deliverer
from stream.kafka.poll_bridge import explain_fencing


def _settings(**values: object) -> Settings:
    return Settings(bootstrap_servers="127.0.0.1:1", **values)  # type: ignore[arg-type]


def test_each_worker_slot_gets_its_own_static_instance_id() -> None:
    """group.instance.id is the group id, the host and the worker index: stable across restarts."""
    settings = _settings(deliverer={"group_id": "deliv"})
    assert consumer_config(settings, 0, "h1")["group.instance.id"] == "deliv-h1-0"
    assert consumer_config(settings, 3, "h1")["group.instance.id"] == "deliv-h1-3"
    assert consumer_config(settings, 3, "h1")["group.id"] == "deliv"


def test_slot_zero_of_two_hosts_are_different_members() -> None:
    """Two hosts (or compose replicas) left at --worker 0 do not fence each other."""
    settings = _settings()
    assert (
        consumer_config(settings, 0, "host-a")["group.instance.id"]
        != consumer_config(settings, 0, "host-b")["group.instance.id"]
    )


def test_group_instance_id_setting_is_a_prefix() -> None:
    """deliverer.group_instance_id replaces the group id and host as the prefix; the index stays."""
    settings = _settings(deliverer={"group_instance_id": "eu-host-7"})
    assert consumer_config(settings, 2)["group.instance.id"] == "eu-host-7-2"


def test_passthrough_group_instance_id_wins() -> None:
    """A group.instance.id in the consumer or kafka passthrough is used as given."""
    assert (
        consumer_config(_settings(consumer={"group.instance.id": "mine"}), 5)["group.instance.id"]
        == "mine"
    )
    assert (
        consumer_config(_settings(kafka={"group.instance.id": "ours"}), 5)["group.instance.id"]
        == "ours"
    )


def test_static_membership_can_be_turned_off() -> None:
    """static_membership=false: a dynamic member, as before."""
    config = consumer_config(_settings(deliverer={"static_membership": False}), 1)
    assert "group.instance.id" not in config
    assert config["partition.assignment.strategy"] == "cooperative-sticky"


def test_alive_turns_false_when_the_loop_stops_ticking() -> None:
    """alive() is False once the loop's last tick is older than stall_timeout_s."""
    stage = Deliverer(_settings(deliverer={"stall_timeout_s": 5}))
    assert stage.alive()
    stage._ticked_at = time.monotonic() - 6  # what a loop stuck for 6 s leaves behind
    assert not stage.alive()


def test_alive_turns_false_when_the_poll_thread_stops_polling() -> None:
    """A poll thread stuck in a librdkafka call turns liveness red too, though the loop ticks."""
    stage = Deliverer(_settings(deliverer={"stall_timeout_s": 5}))
    stage._polled_at = time.monotonic() - 6
    assert not stage.alive()


def test_shutdown_deadline_is_the_revoke_timeout_plus_a_grace() -> None:
    """After SIGTERM the process ends within revoke_timeout_s + 5 s, whatever hangs."""
    stage = Deliverer(_settings(deliverer={"revoke_timeout_s": 7}))
    assert stage.shutdown_s == 12


def test_a_fenced_static_member_is_told_what_to_change() -> None:
    """librdkafka's fencing error becomes one fatal line naming --worker as the fix."""
    fenced = KafkaError(
        "consuming: _FATAL: Fatal error: Broker: Static consumer fenced by other consumer with "
        "same group.instance.id",
        fatal=True,
    )
    explained = explain_fencing(fenced)
    assert isinstance(explained, KafkaError)
    assert explained.fatal
    assert "--worker" in str(explained)
    other = KafkaError("consuming: something else")
    assert explain_fencing(other) is other
