"""The host's frame handler against malformed input (no broker needed)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acquirer.catalogue import PAN_APPROVE
from acquirer.protocol import MTI_PURCHASE, RC_APPROVED, RC_FORMAT_ERROR, Message, sign
from acquirer.testing import fixed_test_mac_key
from harness.mqtt import wire
from harness.mqtt.host_service import HostCore, Reply
from harness.mqtt.hostdb import open_acquirer, provision


def _core(tmp: Path) -> HostCore:
    db = str(tmp / "host.db")
    provision(db, {t: fixed_test_mac_key(t) for t in ["T0001"]})
    clock = iter(range(1_000_000_000, 2_000_000_000, 10))
    return HostCore(open_acquirer(db), clock_ms=lambda: next(clock))


def _purchase(stan: int, key: str, mac_key: bytes = fixed_test_mac_key("T0001")) -> Message:
    """A signed 0200 sent at the start of `_core`'s clock (inside the freshness window)."""
    msg = Message(
        MTI_PURCHASE,
        "T0001",
        "M1",
        stan,
        pan=PAN_APPROVE,
        amount=1250,
        idem_key=key,
        sent_ms=1_000_000_000,
    )
    return sign(msg, mac_key)


def _rc(out: object) -> str:
    assert isinstance(out, Reply)
    return wire.decode(out.payload)[0].rc


def test_bad_frames_get_rc30_or_a_drop(tmp_path: Path) -> None:
    """Wrong MAC, unknown terminal, garbage and oversize: RC 30 or dropped, never charged."""
    core = _core(tmp_path)
    good = wire.encode(_purchase(1, "k1"), "iso8583")
    assert _rc(core.handle("T0001", wire.encode(_purchase(2, "k2", b"wrong"), "iso8583"))) == "30"
    unknown = Message(MTI_PURCHASE, "T0009", "M1", 3, pan=PAN_APPROVE, amount=1)
    assert _rc(core.handle("T0009", wire.encode(unknown, "json"))) == RC_FORMAT_ERROR
    assert core.handle("T0001", b"\x00garbage") is None
    assert core.handle("T0001", good + b"0" * wire.FRAME_MAX_BYTES) is None
    assert core.handle("T0002", good) is None  # topic and terminal id disagree
    assert core.acquirer.ledger_sum() == 0
    assert core.acquirer.balance(PAN_APPROVE) == core.acquirer.initial_balance(PAN_APPROVE)
    assert _rc(core.handle("T0001", good)) == RC_APPROVED
    core.acquirer.close()


def _mutations() -> st.SearchStrategy[bytes]:
    base = wire.encode(_purchase(5, "fuzz-key"), "iso8583")
    base_json = wire.encode(_purchase(5, "fuzz-key"), "json")
    flips = st.tuples(
        st.sampled_from([base, base_json]),
        st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), max_size=4),
    ).map(lambda t: _apply(*t))
    cuts = st.sampled_from([base, base_json]).flatmap(
        lambda b: st.integers(0, len(b)).map(lambda n: b[:n])
    )
    return st.one_of(st.binary(max_size=300), flips, cuts)


def _apply(frame: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(frame)
    for i, v in edits:
        out[i % len(out)] = v
    return bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(_mutations(), min_size=1, max_size=5))
def test_malformed_frames_never_break_the_host(frames: list[bytes]) -> None:
    """Whatever arrives, the handler answers with a decodable frame or drops it, charges at
    most the one genuine purchase, and keeps serving the next good request."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        core = _core(Path(d))
        for f in frames:
            out = core.handle("T0001", f)
            assert out is None or isinstance(out, Reply)
            if isinstance(out, Reply):
                assert out.tid == "T0001"
                wire.decode(out.payload)  # every answer is well-formed
        assert core.stats["internal_error"] == 0
        assert core.acquirer.ledger_sum() == 0
        spent = core.acquirer.initial_balance(PAN_APPROVE) - core.acquirer.balance(PAN_APPROVE)
        assert spent in (0, 1250)  # at most the untouched original, once
        fresh = wire.encode(_purchase(99, "after-fuzz"), "iso8583")
        assert _rc(core.handle("T0001", fresh)) == RC_APPROVED
        core.acquirer.close()
