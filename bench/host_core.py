"""Host cost per purchase without a broker: HostCore on a durable SQLite file.

Feeds N signed ISO 8583 purchase frames straight into `HostCore.handle` (decode, MAC
check, idempotency claim, charge, signed answer, encode) and prints purchases/s.
`--two-fsync` turns off the lazy idempotency claim (`host_service._LazyClaim`), for a
before/after comparison of the host's fsyncs per purchase (two vs one).

    python bench/host_core.py [--purchases 2000] [--two-fsync]
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
from harness.mqtt import wire  # noqa: E402
from harness.mqtt.host_service import (  # noqa: E402
    HostCore,
    default_mac_key,
    fleet_pan,
    open_acquirer,
    provision,
)

TID = "T0001"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--purchases", type=int, default=2000)
    ap.add_argument("--two-fsync", action="store_true", help="commit the claim with fsync too")
    a = ap.parse_args()
    key = default_mac_key(TID)
    frames = [
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
                ),
                key,
            ),
            "iso8583",
        )
        for n in range(a.purchases)
    ]
    with tempfile.TemporaryDirectory(prefix="posharness-hostbench-") as tmp:
        db = str(Path(tmp) / "host.db")
        provision(db, [TID])
        acquirer = open_acquirer(db)
        core = HostCore(acquirer)
        if a.two_fsync:
            core._lazy_claim = None
        started = time.perf_counter()
        for frame in frames:
            core.handle(TID, frame)
        wall_s = time.perf_counter() - started
        acquirer.close()
    mode = "two fsyncs (claim + charge)" if a.two_fsync else "one fsync (lazy claim)"
    print(
        f"{mode}: {a.purchases / wall_s:,.0f} purchases/s, "
        f"{wall_s / a.purchases * 1000:.3f} ms each, {dict(core.stats)}"
    )


if __name__ == "__main__":
    main()
