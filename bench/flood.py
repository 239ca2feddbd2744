"""Flood bench: one authenticated terminal login floods bad-MAC frames; do the others suffer?

A private mosquitto (the generated, hardened config), the acquirer as its own
process (`acquirer serve`, its log on a file) and N normal terminals (a fleet,
in this process) buying at R purchases/s in total. Phase 1 measures the fleet
alone; phase 2 the same fleet while a flooder process, logged in as terminal
FLOODER with a valid broker password but no MAC key, publishes `--flood-rate`
frames/s (QoS 1, wrong MAC) for the whole phase. After the flood, probe purchases
one after another measure the recovery: seconds from the flood's end until a
probe is answered within 2x the phase-1 p99. Also reported: the host's RSS
before and after, and the bytes it logged during the flood.

    python bench/flood.py [--terminals 10] [--rate 100] [--duration 8]
                          [--flood-rate 5000] [--rate-limit 500] [--json]

`--rate-limit 0` runs the host without its per-terminal limit (to compare);
`--flood-leg up` floods a topic nobody reads (a control: the flooder on the same
machine, and the broker, without the host); `--flood-qos 0` floods at QoS 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquirer.catalogue import PAN_APPROVE  # noqa: E402
from acquirer.protocol import MTI_PURCHASE, Message, sign, stamp  # noqa: E402
from harness.mqtt import realclock, wire  # noqa: E402
from harness.mqtt.broker import PrivateBroker  # noqa: E402
from harness.mqtt.cli import _process_cpu_s  # noqa: E402
from harness.mqtt.fleet import FleetOptions, run_fleet  # noqa: E402
from harness.mqtt.hostdb import terminal_id  # noqa: E402
from harness.mqtt.journal import Journal  # noqa: E402
from harness.mqtt.keys import generate, load_key_file, mac_keys, write_key_file  # noqa: E402
from harness.mqtt.terminal_driver import single_terminal, terminal_config  # noqa: E402

FLOODER = "T0999"
PROBE = "T0998"
URL_ENV = "POSHARNESS_FLOOD_URL"
# Probes after the flood: at most this many, one after another.
PROBES_MAX = 400
HOST_READY_TIMEOUT_S = 30.0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def flooder(rate: float, duration_s: float, leg: str = "req", qos: int = 1) -> None:
    """Publish `rate` bad-MAC frames/s for `duration_s` seconds as terminal FLOODER, on
    its `leg` topic (`req`: to the host; `up`: a topic nobody reads, the control)."""
    import paho.mqtt.client as paho

    addr = wire.BrokerAddress.parse(f"env:{URL_ENV}")
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=FLOODER)
    c.username_pw_set(addr.username, addr.password)
    c.max_inflight_messages_set(0)
    c.max_queued_messages_set(0)
    c.connect(addr.host, addr.port)
    c.loop_start()
    key = b"not-the-terminal-key-32-bytes..."
    topic = wire.topic(FLOODER, leg)
    # Frames built beforehand (fresh, well-formed, wrong MAC), so the flooder's own
    # CPU goes into sending them.
    frames = [
        wire.encode(
            stamp(
                sign(
                    Message(
                        MTI_PURCHASE,
                        FLOODER,
                        "M000000000001",
                        n + 1,
                        pan=PAN_APPROVE,
                        amount=100,
                        idem_key=f"flood-{n}",
                    ),
                    key,
                ),
                key,
                realclock.wall_ms(),
            ),
            "iso8583",
        )
        for n in range(1000)
    ]
    t0 = time.monotonic()
    sent = 0
    gate = threading.Event()
    while (now := time.monotonic() - t0) < duration_s:
        due = int(now * rate)
        while sent < due:
            c.publish(topic, frames[sent % len(frames)], qos=qos)
            sent += 1
        gate.wait(0.005)
    c.loop_stop()
    c.disconnect()
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - t0, 2)}), flush=True)


class Host:
    """`acquirer serve` in its own process, its log on a file."""

    def __init__(self, broker: PrivateBroker, work: Path, keys: str, rate_limit: int) -> None:
        self.log = work / "host.log"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "POSHARNESS_BROKER_URL": broker.address("acquirer").url(show_password=True),
        }
        cmd = [sys.executable, "-m", "harness.mqtt", "acquirer", "serve"]
        cmd += ["--broker", "env:POSHARNESS_BROKER_URL", "--db", str(work / "host.db")]
        cmd += ["--keys", keys, "--rate-limit", str(rate_limit)]
        self._logf = self.log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._logf, env=env)
        assert self.proc.stdout is not None
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.strip() == b"ready":
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(HOST_READY_TIMEOUT_S) or self.proc.poll() is not None:
            raise SystemExit(f"acquirer did not start: {self.log.read_text()[-500:]}")
        self.db = str(work / "host.db")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self._logf.close()


async def probes(
    broker: PrivateBroker, key: bytes, work: Path, limit_ms: float, start: float
) -> tuple[float | None, int]:
    """Purchases on PROBE one after another until one is answered within `limit_ms`:
    (seconds from `start` to that answer, probes sent)."""
    cfg = terminal_config(PROBE, key, response_timeout_ms=30_000, max_sends=1)
    from terminal.reference import ReferenceFirmware

    journal = Journal(str(work / "probe.db"), durable=False)
    client, drv = single_terminal(broker.address(PROBE), ReferenceFirmware(cfg), cfg, journal)
    n = 0
    try:
        async with client:
            drv.boot()
            while n < PROBES_MAX:
                n += 1
                intent = await drv.purchase(100 + n % 300, PAN_APPROVE)
                if intent.outcome == "approved" and intent.latency_ms <= limit_ms:
                    return time.monotonic() - start, n
    finally:
        journal.close()
    return None, n


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Phase 1 runs T0001..TN, phase 2 TN+1..T2N: each phase's verdict judges its own
    # terminals' sales only (the host's books hold both).
    tids = [terminal_id(n) for n in range(1, 2 * args.terminals + 1)]
    out: dict[str, Any] = {"terminals": args.terminals, "rate": args.rate}
    out |= {"flood_rate": args.flood_rate, "rate_limit": args.rate_limit}
    out["flood_leg"], out["flood_qos"] = args.flood_leg, args.flood_qos
    out["flooder_keyed"] = args.flooder_keyed
    with (
        tempfile.TemporaryDirectory(prefix="posharness-flood-") as tmp,
        PrivateBroker(terminal_users=[*tids, PROBE, FLOODER]) as broker,
    ):
        work = Path(tmp)
        keys = str(work / "keys.json")
        # By default the host holds no key for the flooder (an unknown terminal with a
        # broker login); `--flooder-keyed` provisions it, so its frames fail the MAC
        # check of a terminal the host knows (the rate limiter's path).
        keyed = [FLOODER] if args.flooder_keyed else []
        write_key_file(keys, generate([*tids, PROBE, *keyed]))
        secrets_ = load_key_file(keys)
        host = Host(broker, work, keys, args.rate_limit)
        try:
            fleet_keys = {t: k for t, k in mac_keys(secrets_).items() if t in tids}

            def fleet_run(first: int) -> Any:
                opts = FleetOptions(
                    terminals=args.terminals,
                    rate_per_s=args.rate,
                    duration_s=args.duration,
                    first_terminal=first,
                )
                return asyncio.run(
                    run_fleet(broker.address("fleet"), host.db, opts, mac_keys=fleet_keys)
                )

            base = fleet_run(1)
            out["p99_ms_alone"] = base.latency_ms.get("p99")
            out["p50_ms_alone"] = base.latency_ms.get("p50")
            out["rss_kb_before"] = rss_kb(host.proc.pid)
            log_before = host.log.stat().st_size
            env = {
                **os.environ,
                URL_ENV: broker.address(FLOODER).url(show_password=True),
                "PYTHONPATH": str(ROOT),
            }
            flood_s = args.duration + 1.0
            flood = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--flooder",
                    str(args.flood_rate),
                    str(flood_s),
                    args.flood_leg,
                    str(args.flood_qos),
                ],
                stdout=subprocess.PIPE,
                env=env,
            )
            started = time.monotonic()
            assert broker.proc is not None
            pids = {"host": host.proc.pid, "broker": broker.proc.pid, "flooder": flood.pid}
            cpu0 = {k: _process_cpu_s(pid) or 0.0 for k, pid in pids.items()}
            flooded = fleet_run(args.terminals + 1)
            # CPU seconds each process used per wall second of the flood phase (1.0 = a core).
            wall = time.monotonic() - started
            for k, pid in pids.items():
                used = (_process_cpu_s(pid) or 0.0) - cpu0[k]
                out[f"{k}_cores_busy_flood"] = round(used / wall, 2)
            out["p99_ms_flood"] = flooded.latency_ms.get("p99")
            out["p50_ms_flood"] = flooded.latency_ms.get("p50")
            out["completed_flood"] = f"{flooded.completed}/{flooded.offered}"
            within_5s = sum(1 for ms in flooded.latencies_ms if ms <= 5000)
            out["answered_within_5s_flood"] = f"{within_5s}/{flooded.offered}"
            out["invariants_ok"] = base.invariants_ok and flooded.invariants_ok
            out["invariant_failures"] = {
                k: v[:2] for r in (base, flooded) for k, v in r.invariants.items() if v
            }
            fout, _ = flood.communicate()
            out["flood_sent"] = json.loads(fout.decode().strip().splitlines()[-1])
            flood_end = time.monotonic()
            limit_ms = 2 * max(1.0, base.latency_ms.get("p99", 1.0))
            rec, n = asyncio.run(probes(broker, secrets_[PROBE].mac_key, work, limit_ms, flood_end))
            out["recovery_s"] = None if rec is None else round(rec, 2)
            out["recovery_probes"] = n
            out["flood_wall_s"] = round(flood_end - started, 2)
            out["rss_kb_after"] = rss_kb(host.proc.pid)
            out["rss_growth_mb"] = round((out["rss_kb_after"] - out["rss_kb_before"]) / 1024, 1)
            out["log_bytes_flood"] = host.log.stat().st_size - log_before
            with host.log.open("rb") as f:
                f.seek(log_before)
                out["host_log_flood"] = f.read(2000).decode(errors="replace").splitlines()[:6]
            p_a, p_f = out["p99_ms_alone"], out["p99_ms_flood"]
            out["p99_ratio"] = round(p_f / p_a, 2) if p_a else None
        finally:
            host.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--flooder"]:
        flooder(float(argv[1]), float(argv[2]), argv[3], int(argv[4]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--terminals", type=int, default=10)
    p.add_argument("--rate", type=float, default=100.0, help="fleet purchases/s in total")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per phase")
    p.add_argument("--flood-rate", type=float, default=5000.0, help="bad frames/s")
    p.add_argument("--rate-limit", type=int, default=500, help="host's frames/s per terminal")
    p.add_argument("--flood-qos", type=int, choices=(0, 1), default=1)
    p.add_argument(
        "--flooder-keyed",
        action="store_true",
        help="the host holds a key for the flooder (its frames fail MAC, not 'unknown')",
    )
    p.add_argument(
        "--flood-leg",
        choices=("req", "up"),
        default="req",
        help="flood the host (req) or, as a control, a topic nobody reads (up): "
        "what the flooder's own CPU and the broker cost the others",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    out = run(args)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:26s} {v}")
    ok = out["invariants_ok"] and out["p99_ratio"] is not None and out["p99_ratio"] <= 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
