"""Host cost per purchase without a broker: HostCore on a durable SQLite file.

Feeds N signed ISO 8583 purchase frames straight into `HostCore.handle` (decode, MAC
check, idempotency claim, charge, signed answer, encode) and prints purchases/s.
Modes: one fsync per purchase (the default for a bare `HostCore`); `--two-fsync`
(the lazy idempotency claim `host_service._LazyClaim` turned off); `--group N`: the
MQTT service's group commit, one transaction and one WAL fsync per N purchases. CPU is
this process's (user + system) per purchase.

    python bench/host_core.py [--purchases 2000] [--two-fsync | --group N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquirer.protocol import MTI_PURCHASE, Message, sign  # noqa: E402
from acquirer.testing import fixed_test_mac_key  # noqa: E402
from harness.mqtt import realclock, wire  # noqa: E402
from harness.mqtt.host_service import HostCore  # noqa: E402
from harness.mqtt.hostdb import fleet_pan, open_acquirer, provision  # noqa: E402
from harness.mqtt.ratelimit import RateLimiter  # noqa: E402

TID = "T0001"


def purchase_frames(count: int, first: int = 0) -> list[bytes]:
    """`count` signed ISO 8583 purchases from T0001, each with its own key, sent now
    (a frame with no transmission time is refused as stale: RC 63, nothing charged)."""
    key = fixed_test_mac_key(TID)
    now = realclock.wall_ms()
    return [
        wire.encode(
            sign(
                Message(
                    MTI_PURCHASE,
                    TID,
                    "M000000000001",
                    n % 999_999 + 1,
                    pan=fleet_pan(1),
                    amount=101 + n % 300,
                    idem_key=f"{TID}-{n:010d}",
                    sent_ms=now,
                ),
                key,
            ),
            "iso8583",
        )
        for n in range(first, first + count)
    ]


def feed(core: HostCore, frames: list[bytes], group: int) -> tuple[float, float]:
    """Every frame into `core` (group commit of `group` when the core has one);
    returns (wall s, this process's CPU s)."""
    acquirer = core.acquirer
    started, cpu0 = time.perf_counter(), time.process_time()
    for n, frame in enumerate(frames, 1):
        if core.wal is not None and not acquirer.in_group:
            acquirer.begin_group()
        core.handle(TID, frame)
        if core.wal is not None and n % group == 0:
            acquirer.commit_group()
            core.wal.sync()
    if acquirer.in_group:
        acquirer.commit_group()
    if core.wal is not None:
        core.wal.sync()
    return time.perf_counter() - started, time.process_time() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--purchases", type=int, default=2000)
    ap.add_argument("--two-fsync", action="store_true", help="commit the claim with fsync too")
    ap.add_argument("--group", type=int, default=0, help="group commit: one fsync per N")
    a = ap.parse_args()
    frames = purchase_frames(a.purchases)
    with tempfile.TemporaryDirectory(prefix="posharness-hostbench-") as tmp:
        db = str(Path(tmp) / "host.db")
        provision(db, {t: fixed_test_mac_key(t) for t in [TID]})
        acquirer = open_acquirer(db)
        # No rate limit: this measures the host's own cost per request.
        unlimited = RateLimiter(rate_per_s=10**9, burst=10**9)
        core = HostCore(acquirer, group_commit=a.group > 0, limiter=unlimited)
        if a.two_fsync:
            core._lazy_claim = None
        wall_s, cpu_s = feed(core, frames, a.group)
        acquirer.close()
    if a.group:
        mode = f"group commit, one fsync per {a.group}"
    else:
        mode = "two fsyncs (claim + charge)" if a.two_fsync else "one fsync (lazy claim)"
    print(
        f"{mode}: {a.purchases / wall_s:,.0f} purchases/s, "
        f"{wall_s / a.purchases * 1000:.3f} ms wall and "
        f"{cpu_s / a.purchases * 1e6:.0f} us CPU each, {dict(core.stats)}"
    )


if __name__ == "__main__":
    main()
