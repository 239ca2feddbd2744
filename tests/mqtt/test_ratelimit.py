"""The host's per-terminal limits: a token bucket on frames and a throttle on warnings.

Sans-I/O and deterministic: the time is passed in, never read from a clock."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from acquirer.catalogue import PAN_APPROVE
from acquirer.protocol import MTI_PURCHASE, Message, sign, stamp
from acquirer.testing import fixed_test_mac_key
from harness.mqtt import wire
from harness.mqtt.host_service import HostCore, Reply
from harness.mqtt.hostdb import open_acquirer, provision
from harness.mqtt.ratelimit import LogThrottle, RateLimiter


def test_bucket_allows_a_burst_then_the_rate() -> None:
    rl = RateLimiter(rate_per_s=10, burst=5)
    assert [rl.allow("T1", 0) for _ in range(6)] == [True] * 5 + [False]
    assert not rl.allow("T1", 99)  # 0.99 token refilled
    assert rl.allow("T1", 100)  # 1 token after 100 ms at 10/s
    assert not rl.allow("T1", 100)
    assert [rl.allow("T1", 10_000) for _ in range(6)] == [True] * 5 + [False]  # capped at burst


def test_bucket_is_per_terminal() -> None:
    rl = RateLimiter(rate_per_s=1, burst=1)
    assert rl.allow("T1", 0) and not rl.allow("T1", 0)
    assert rl.allow("T2", 0)


def test_bucket_never_refills_when_the_clock_steps_back() -> None:
    rl = RateLimiter(rate_per_s=1000, burst=1)
    assert rl.allow("T1", 10_000)
    assert not rl.allow("T1", 0)
    assert not rl.allow("T1", 10_000)  # no refill counted from the stepped-back time
    assert rl.allow("T1", 10_001)


def test_bucket_memory_is_bounded() -> None:
    rl = RateLimiter(rate_per_s=1, burst=1, max_terminals=3)
    for n in range(10):
        rl.allow(f"T{n}", 0)
    assert len(rl) == 3


def test_a_flood_from_one_terminal_is_capped_at_the_rate() -> None:
    """5,000 frames/s for 10 s through a 500/s bucket: 500/s pass (plus the burst)."""
    rl = RateLimiter(rate_per_s=500, burst=1000)
    passed = sum(rl.allow("T1", n // 5) for n in range(50_000))  # 5 frames per ms
    assert passed == 1000 + 500 * 10 - 1 or passed == 1000 + 500 * 10


def test_log_throttle_one_line_then_one_summary_per_interval() -> None:
    lt = LogThrottle(interval_ms=10_000)
    lines: list[str] = []
    for n in range(50_000):  # 5,000 per s for 10 s, then one more
        lines += lt.note("T1", "bad MAC" if n % 2 else "over the rate limit", f"line {n}", n // 5)
    assert lines == ["line 0"]
    lines += lt.note("T1", "bad MAC", "line next", 10_000)
    assert lines == [
        "line 0",
        "T1: 49,999 more frame(s) refused or dropped within 10 s: "
        "bad MAC 25,000, over the rate limit 24,999",
        "line next",
    ]
    assert lt.flush(19_999) == []
    assert lt.flush(20_000) == []  # nothing was suppressed in the second window
    assert len(lt) == 0


def test_log_throttle_flush_reports_a_flood_that_stopped() -> None:
    lt = LogThrottle(interval_ms=1_000)
    for _ in range(3):
        lt.note("T1", "RC 30", "x", 0)
    assert lt.flush(999) == []
    assert lt.flush(1_000) == ["T1: 2 more frame(s) refused or dropped within 1 s: RC 30 2"]


def test_log_throttle_memory_is_bounded_and_evicted_windows_are_summarised() -> None:
    lt = LogThrottle(interval_ms=1_000, max_terminals=2)
    for tid in ("T1", "T1", "T2", "T3"):
        lt.note(tid, "RC 30", "x", 0)
    assert len(lt) == 2


@pytest.fixture
def core(tmp_path: Path) -> HostCore:
    db = str(tmp_path / "host.db")
    provision(db, {t: fixed_test_mac_key(t) for t in ("T0001", "T0002")})
    now = [1_700_000_000_000]
    c = HostCore(
        open_acquirer(db),
        clock_ms=lambda: now[0],
        limiter=RateLimiter(rate_per_s=50, burst=10),
        log_throttle=LogThrottle(interval_ms=10_000),
    )
    c.now = now  # type: ignore[attr-defined]
    return c


def _purchase(tid: str, stan: int, now_ms: int, key: bytes) -> bytes:
    msg = Message(
        MTI_PURCHASE,
        tid,
        "M000000000001",
        stan,
        pan=PAN_APPROVE,
        amount=100,
        idem_key=f"{tid}-k{stan}",
    )
    return wire.encode(stamp(sign(msg, key), key, now_ms), "iso8583")


def test_host_drops_a_flood_unanswered_and_keeps_serving_others(
    core: HostCore, caplog: pytest.LogCaptureFixture
) -> None:
    """T0002 sends 1,000 bad-MAC frames in one instant: 10 (the burst) get an unsigned
    RC 30, the other 990 are dropped unanswered and counted; T0001 is still approved,
    and the whole flood logs one warning line and, after the interval, one summary
    line: not 1,000 lines."""
    now = core.now[0]  # type: ignore[attr-defined]
    bad = _purchase("T0002", 1, now, b"not the key at all, 32 bytes....")
    with caplog.at_level(logging.WARNING, logger="posharness.mqtt.host"):
        answers = [core.handle("T0002", bad) for _ in range(1000)]
        ok = core.handle("T0001", _purchase("T0001", 1, now, fixed_test_mac_key("T0001")))
    assert sum(isinstance(a, Reply) for a in answers) == 10
    assert core.stats["rate_limited"] == 990
    assert isinstance(ok, Reply)
    msg, _ = wire.decode(ok.payload)
    assert msg.rc == "00"
    assert len(caplog.records) == 1
    core.now[0] += 10_000  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="posharness.mqtt.host"):
        core.flush_log()
    assert len(caplog.records) == 2
    assert caplog.records[-1].getMessage() == (
        "host: T0002: 999 more frame(s) refused or dropped within 10 s: "
        "RC 30 9, over the rate limit 990"
    )


def test_refused_frames_spend_a_small_budget_then_everything_is_dropped(core: HostCore) -> None:
    """After 20 refused (bad-MAC) frames within the burst, even a good frame of that
    terminal is dropped until the bad bucket refills (5/s); another terminal is served."""
    core.limiter = RateLimiter(rate_per_s=10_000, burst=10_000)
    now = core.now[0]  # type: ignore[attr-defined]
    bad = _purchase("T0002", 1, now, b"not the key at all, 32 bytes....")
    answers = [core.handle("T0002", bad) for _ in range(100)]
    assert sum(isinstance(a, Reply) for a in answers) == 20
    good = _purchase("T0002", 2, now, fixed_test_mac_key("T0002"))
    assert core.handle("T0002", good) is None
    assert isinstance(
        core.handle("T0001", _purchase("T0001", 1, now, fixed_test_mac_key("T0001"))), Reply
    )
    core.now[0] += 200  # type: ignore[attr-defined]  # one bad token back at 5/s
    reply = core.handle("T0002", good)
    assert isinstance(reply, Reply) and wire.decode(reply.payload)[0].rc == "00"
