"""The amps gate (issue 7, "one gate for amps"): every amp value on the wire passes through
``gate.wire_amps``, which applies the wiring limits whatever the controller asked for."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.protocol.test_master import Bus, link
from twcmaster.protocol import messages as m
from twcmaster.protocol.gate import (
    GateInput,
    WiringLimits,
    committed_centiamps,
    protocol_min_amps,
    wire_amps,
)

PACKAGE = Path(__file__).resolve().parents[2] / "twcmaster"

limits_strategy = st.builds(
    WiringLimits,
    max_amps_per_twc=st.one_of(st.none(), st.floats(0, 100)),
    max_amps_all_twcs=st.one_of(st.none(), st.floats(0, 300)),
    min_amps_per_twc=st.floats(0, 32),
)


@given(
    requested=st.integers(-10, 10_000),
    max_centiamps=st.integers(0, 8000),
    protocol_min=st.sampled_from([5, 6]),
    others=st.lists(st.integers(0, 8000), max_size=5),
    limits=limits_strategy,
    stopping=st.booleans(),
)
def test_what_the_gate_lets_through_respects_every_limit(
    requested, max_centiamps, protocol_min, others, limits, stopping
):
    amps = wire_amps(
        GateInput(requested, max_centiamps, protocol_min), others, limits, stopping=stopping
    )
    assert isinstance(amps, int) and amps >= 0
    if amps == 0:
        return
    assert not stopping
    assert amps >= max(limits.min_amps_per_twc, protocol_min)  # 0 or at least the floor
    assert amps <= requested and amps * 100 <= max_centiamps
    if limits.max_amps_per_twc is not None:
        assert amps <= limits.max_amps_per_twc
    if limits.max_amps_all_twcs is not None:
        assert amps + sum(others) / 100 <= limits.max_amps_all_twcs


def test_a_controller_bug_cannot_put_more_than_the_wiring_on_the_bus():
    """Both slaves asked for 32 A on a 40 A circuit: the gate sends the second only what the
    first (committed at 32 A) leaves, 8 A."""
    bus = Bus(limits=WiringLimits(max_amps_per_twc=32, max_amps_all_twcs=40, min_amps_per_twc=6))
    bus.run(1.5)
    link(bus, 0x1111)
    link(bus, 0x2222)
    bus.run(2.0)
    bus.master.set_offer(0x1111, 32)
    bus.master.set_offer(0x2222, 32)
    bus.run(3.0)
    slaves = bus.master.slaves.values()
    committed = [committed_centiamps(s.sent_centiamps, s.allowed_centiamps) for s in slaves]
    assert sum(committed) <= 4000, committed
    last = {s.twcid: s.sent_centiamps for s in slaves}
    assert sorted(last.values()) == [800, 3200]


def test_a_stopping_master_sends_only_0_a():
    bus = Bus(limits=WiringLimits(max_amps_per_twc=32, max_amps_all_twcs=40))
    bus.run(1.5)
    link(bus, 0x1111)
    bus.master.set_offer(0x1111, 16)
    bus.run(2.0)
    bus.master.stop(bus.now)
    bus.master.set_offer(0x1111, 16)  # an allocation after stop changes nothing
    bus.run(0.5)
    assert bus.master.stopped
    sent_after = [msg for t, msg in bus.heartbeats_to(0x1111) if t >= bus.now - 0.5]
    assert sent_after and all(msg.centiamps == 0 for msg in sent_after)


def test_the_protocol_minimum_is_5_a_on_p1_and_6_a_on_p2():
    assert (protocol_min_amps(1), protocol_min_amps(2)) == (5, 6)  # §6.1
    bus = Bus()
    link(bus, 0x1111, protocol=1)
    link(bus, 0x2222, protocol=2)
    assert [s.min_amps_supported for s in bus.master.slaves.values()] == [5, 6]


# --- structure: no other path to the wire for amps ---------------------------------------------


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """(name called, node) for every call: ``f(...)`` -> "f", ``a.b.f(...)`` -> "b.f"."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                found.append((func.id, node))
            elif isinstance(func, ast.Attribute):
                owner = func.value
                prefix = (
                    owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                )
                found.append((f"{prefix}.{func.attr}", node))
    return found


def _functions(tree: ast.AST) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_only_the_gated_heartbeat_builder_makes_master_heartbeats():
    """No module but protocol/master.py builds a master heartbeat (the only frame with amps
    from us), and there only ``_heartbeat_message``, whose only caller takes the amps from
    the gate."""
    builders = {"MasterHeartbeat", "m.MasterHeartbeat", "MasterHeartbeat.build"}
    where = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "messages.py":
            continue  # the message class itself (decode builds received ones)
        tree = ast.parse(path.read_text())
        for function in _functions(tree).values():
            if any(name in builders for name, _ in _calls(function)):
                where.append((path.relative_to(PACKAGE).as_posix(), function.name))
    assert sorted(set(where)) == [("protocol/master.py", "_heartbeat_message")]

    tree = ast.parse((PACKAGE / "protocol/master.py").read_text())
    callers = [
        name
        for name, function in _functions(tree).items()
        if any(called.endswith("_heartbeat_message") for called, _ in _calls(function))
    ]
    assert callers == ["_heartbeat"]
    heartbeat_calls = {called for called, _ in _calls(_functions(tree)["_heartbeat"])}
    assert "self._gated_amps" in heartbeat_calls
    gated_calls = {called for called, _ in _calls(_functions(tree)["_gated_amps"])}
    assert "wire_amps" in gated_calls


def test_every_heartbeat_the_master_sends_carries_gated_amps():
    """At run time: the amps in each heartbeat frame equal what the gate returned."""
    bus = Bus(limits=WiringLimits(max_amps_per_twc=20, max_amps_all_twcs=30, min_amps_per_twc=6))
    bus.run(1.5)
    link(bus, 0x1111)
    link(bus, 0x2222, protocol=1)
    for amps in (40, 3, 25, 0, 18):
        bus.master.set_offer(0x1111, amps)
        bus.master.set_offer(0x2222, amps)
        bus.run(1.5)
    for _, msg in bus.sent:
        if isinstance(msg, m.MasterHeartbeat) and msg.command in (0x05, 0x09):
            assert msg.centiamps == 0 or 600 <= msg.centiamps <= 2000, msg


def test_a_dropped_slave_still_counts_for_30_s_and_when_it_links_again():
    """A slave dropped after 26 s of silence may still be drawing its last limit (it heard
    our heartbeats, we did not hear it): the gate keeps counting it for 30 s, and carries that
    over if it links again, until its first reply says what it applies."""
    bus = Bus(limits=WiringLimits(max_amps_per_twc=32, max_amps_all_twcs=40, min_amps_per_twc=6))
    bus.run(1.5)
    link(bus, 0x1111)
    link(bus, 0x2222)
    bus.master.set_offer(0x1111, 32)
    bus.master.set_offer(0x2222, 6)
    bus.run(3.0)
    assert bus.master.slaves[0x1111].allowed_centiamps == 3200
    del bus.repliers[0x1111]  # A goes deaf to us... or we to it
    bus.master.set_offer(0x2222, 32)
    bus.run(27.0)  # A dropped after 26 s
    assert 0x1111 not in bus.master.slaves
    assert bus.master.slaves[0x2222].sent_centiamps == 800
    bus.run(10.0)
    assert bus.master.slaves[0x2222].sent_centiamps == 800  # still within the hold
    bus.feed(m.SlaveLinkReady(0x1111, 0x55, 3200, 2))  # A is back, not yet answering
    bus.run(5.0)
    assert bus.master.slaves[0x2222].sent_centiamps == 800
    link(bus, 0x1111)  # it answers again: 0 A applied now, so B may rise
    bus.master.set_offer(0x1111, 0)
    bus.run(3.0)
    assert bus.master.slaves[0x2222].sent_centiamps == 3200


def test_after_the_hold_a_dropped_slave_no_longer_counts():
    bus = Bus(limits=WiringLimits(max_amps_per_twc=32, max_amps_all_twcs=40, min_amps_per_twc=6))
    bus.run(1.5)
    link(bus, 0x1111)
    link(bus, 0x2222)
    bus.master.set_offer(0x1111, 32)
    bus.run(3.0)
    del bus.repliers[0x1111]
    bus.master.set_offer(0x2222, 32)
    bus.run(26.5 + 30.5)
    assert bus.master.slaves[0x2222].sent_centiamps == 3200
