"""TCP host throughput: posharness `acquirer serve --listen` beside iso8583sim's own host.

Two hosts on loopback, measured in the same run:

* posharness (`acquirer serve --listen tcp://...`): every request authenticated (MAC),
  recorded in the idempotency store and the double-entry ledger, and committed with
  an fsync before its answer (no group commit over TCP yet);
* `iso8583sim serve` (PyPI, AGPL; run as a tool from its own virtualenv under
  ~/.cache/posharness, as tests/tcp/test_interop_iso8583sim.py installs it): a rule-based
  host that approves and keeps no books.

posharness is loaded twice: by this script's own client (this protocol's signed frames
built beforehand, one connection, `--concurrency` requests in flight, answers matched by
terminal and STAN), and by `iso8583sim load` as a standard terminal (plain 1987
authorisations, MAC-less, `--standard-terminals`, the rate limit off: one terminal id
carries the whole load). iso8583sim's own host is loaded by its `load` command. All
print requests/s and latency percentiles.

    python bench/tcp.py [--count 3000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquirer import iso8583  # noqa: E402
from acquirer import protocol as p  # noqa: E402
from acquirer.catalogue import PAN_APPROVE  # noqa: E402
from harness.mqtt import realclock  # noqa: E402
from harness.mqtt.keys import load_key_file  # noqa: E402
from harness.tcp.framing import FrameReader, encode_frame  # noqa: E402

TERMINALS = 10
TOOL = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "posharness"
    / "iso8583sim-1.6.0-security"
    / "bin"
    / "iso8583sim"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def frames(keys_path: str, count: int) -> list[tuple[tuple[str, int], bytes]]:
    """`count` signed purchases over TERMINALS terminals, each with its (tid, stan)."""
    keys = load_key_file(keys_path)
    now = realclock.wall_ms()
    out = []
    for n in range(count):
        tid = f"T{n % TERMINALS + 1:04d}"
        stan = n // TERMINALS + 1
        key = keys[tid].mac_key
        msg = p.Message(
            p.MTI_PURCHASE, tid, "M000000000001", stan, pan=PAN_APPROVE, amount=100 + n % 50,
            idem_key=f"{tid}-bench-{now}-{stan}",
        )  # fmt: skip
        out.append(
            ((tid, stan), encode_frame(iso8583.encode(p.stamp(p.sign(msg, key), key, now)), "2b"))
        )
    return out


async def load(
    port: int, work: list[tuple[tuple[str, int], bytes]], concurrency: int
) -> dict[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    waiting: dict[tuple[str, int], asyncio.Future[float]] = {}
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    rcs: dict[str, int] = {}

    async def pump() -> None:
        framer = FrameReader("2b")
        while data := await reader.read(65536):
            for _, payload in framer.feed(data):
                ans = iso8583.decode(payload)
                rcs[ans.rc] = rcs.get(ans.rc, 0) + 1
                fut = waiting.pop((ans.terminal_id, ans.stan), None)
                if fut is not None:
                    fut.set_result(time.perf_counter())

    async def one(ident: tuple[str, int], frame: bytes) -> None:
        async with slots:
            fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            waiting[ident] = fut
            t0 = time.perf_counter()
            writer.write(frame)
            latencies.append((await fut - t0) * 1000)

    reading = asyncio.create_task(pump())
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i, f) for i, f in work))
    wall = time.perf_counter() - t0
    reading.cancel()
    writer.close()
    q = statistics.quantiles(latencies, n=100)
    return {
        "requests_per_s": round(len(work) / wall),
        "p50_ms": round(q[49], 2),
        "p99_ms": round(q[98], 2),
        "approved": rcs.get("00", 0),
    }


def start_host(tmp: str, extra: list[str]) -> tuple[subprocess.Popen[str], str, int]:
    """`acquirer serve --listen` on a fresh database in `tmp`: (process, db, port)."""
    db = str(Path(tmp) / "host.db")
    serve = ["acquirer", "serve", "--db", db, "--provision", str(TERMINALS), *extra]
    host = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *serve, "--listen", "tcp://127.0.0.1:0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert host.stdout is not None
    line = host.stdout.readline()
    while not line.startswith("acquirer: serving tcp://"):
        line = host.stdout.readline()
    return host, db, int(line.split()[2].rsplit(":", 1)[1])


def posharness_host(count: int, concurrency: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="posharness-tcp-bench-") as tmp:
        host, db, port = start_host(tmp, [])
        try:
            work = frames(f"{db}.keys.json", 2 * count)
            return {
                f"c={concurrency}": asyncio.run(load(port, work[:count], concurrency)),
                "c=1": asyncio.run(load(port, work[count : count + count // 3], 1)),
            }
        finally:
            host.terminate()
            host.wait()


def tool_load(port: int, count: int, concurrency: int) -> str:
    """`iso8583sim load` of `count` requests at `concurrency`, its summary flattened."""
    argv = ["load", "--port", str(port), "-n", str(count), "-c", str(concurrency)]
    run = subprocess.run(
        [str(TOOL), *argv, "--format", "ascii-hex"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return " ".join(run.stdout.replace("\u2502", " ").split())[:600]


def modes(count: int, concurrency: int) -> tuple[tuple[int, int], ...]:
    """(concurrency, requests) of each row: `count` at `concurrency`, a third one at a time."""
    return ((concurrency, count), (1, count // 3))


def posharness_standard(count: int, concurrency: int) -> dict[str, str]:
    """`iso8583sim load` against a MAC-less standard terminal, each mode on a fresh host
    (the tool restarts its STANs at 1 and sends no field 7: on the same host a second run
    would be answered from the first one's stored outcomes); the sales booked after each."""
    if not TOOL.exists():
        return {"skipped": f"{TOOL} missing (scripts/test -m interop installs it)"}
    out = {}
    for c, n in modes(count, concurrency):
        with tempfile.TemporaryDirectory(prefix="posharness-tcp-bench-") as tmp:
            cfg = Path(tmp) / "standard.json"
            cfg.write_text('{"TERM0001": {"mac": "none"}}')
            cfg.chmod(0o600)
            extra = ["--standard-terminals", str(cfg), "--rate-limit", "0"]
            host, db, port = start_host(tmp, extra)
            try:
                text = tool_load(port, n, c)
            finally:
                host.terminate()
                host.wait()
            conn = sqlite3.connect(db)
            booked = conn.execute("SELECT COUNT(*) FROM txns WHERE status = 'approved'")
            out[f"c={c}"] = f"{text} | sales booked: {booked.fetchone()[0]}"
            conn.close()
    return out


def iso8583sim_host(count: int, concurrency: int) -> dict[str, str]:
    if not TOOL.exists():
        return {"skipped": f"{TOOL} missing (scripts/test -m interop installs it)"}
    port = free_port()
    serve = subprocess.Popen(
        [str(TOOL), "serve", "--port", str(port), "--format", "ascii-hex"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        return {f"c={c}": tool_load(port, n, c) for c, n in modes(count, concurrency)}
    finally:
        serve.terminate()
        serve.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    print("posharness acquirer serve --listen (MAC, books, fsync per request):")
    for mode, row in posharness_host(args.count, args.concurrency).items():
        print(f"  {mode}: {row}")
    print("posharness acquirer serve --listen, a MAC-less standard terminal, by iso8583sim load:")
    for mode, text in posharness_standard(args.count, args.concurrency).items():
        print(f"  {mode}: {text}")
    print("iso8583sim serve (approve all, no books), measured by iso8583sim load:")
    for mode, text in iso8583sim_host(args.count, args.concurrency).items():
        print(f"  {mode}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
