"""Subcommands `acquirer`, `terminal` and `fleet` (registered into harness.cli; `fleet`
runs in cli_fleet.py).

Without `--broker` each command starts a private broker (mosquitto, else the
embedded one) on a free loopback port and stops it on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scenarios.credits import CREDIT_ACTIONS
from scenarios.model import PAYMENT_ACTIONS
from terminal.firmware import CHIP_DECLINED, CHIP_REMOVED

from .broker import Broker, BrokerError, start_private_broker
from .credit_lines import CREDIT_WORDS, Credit, drive_credit, parse_credit
from .fleet_args import register_fleet
from .fleet_procs import (
    fleet_worker_users,
)
from .keys import KEYS_ENV, KeyFileError
from .ratelimit import RATE_PER_S
from .wire import CODECS, BrokerAddress

if TYPE_CHECKING:
    from terminal.firmware import FirmwareConfig

    from .keys import TerminalSecret
    from .terminal_driver import Intent, TerminalDriver


def _add_tcp_args(parser: argparse.ArgumentParser, flag: str, what: str) -> None:
    """`flag` tcp://HOST:PORT and its `--header` (docs/tcp.md)."""
    parser.add_argument(flag, metavar="tcp://HOST:PORT", help=f"{what} (docs/tcp.md)")
    parser.add_argument(
        "--header",
        choices=("2b", "4b", "2a", "4a"),
        default="2b",
        help=f"with {flag}: length header, 2/4 bytes binary or ASCII digits (default 2b)",
    )


def register(sub: Any) -> None:
    """Add the MQTT subcommands to the top-level parser's subparsers."""
    acq = sub.add_parser("acquirer", help="the mock acquirer as an MQTT service")
    acq_sub = acq.add_subparsers(dest="acquirer_command", required=True)
    serve = acq_sub.add_parser("serve", help="serve posh/+/req until interrupted")
    serve.add_argument("--broker", help="mqtt://[user:pass@]host:port (default: private broker)")
    serve.add_argument(
        "--db",
        required=True,
        help="SQLite file for ledger and idempotency, or a postgresql:// URL "
        "(several instances may share it: --share; docs/scale-out.md)",
    )
    serve.add_argument(
        "--share",
        metavar="GROUP",
        help="one of several instances on one --db postgresql:// URL: take a share of the "
        "requests through the MQTT shared subscription $share/GROUP/posh/+/req",
    )
    serve.add_argument(
        "--keys",
        metavar="FILE",
        help="terminal key file (JSON, mode 0600); created with random keys for "
        "--provision terminals if missing (default: DB.keys.json)",
    )
    serve.add_argument(
        "--rate-limit",
        type=int,
        default=RATE_PER_S,
        metavar="N",
        help=f"frames per second per terminal; excess dropped unanswered (default "
        f"{RATE_PER_S}, bursts of twice that; 0: no limit)",
    )
    serve.add_argument(
        "--provision",
        type=int,
        default=100,
        metavar="N",
        help="when the key file is created: terminals T0001..TN (default 100; "
        "0: no key file, serve the terminals already in --db)",
    )
    _add_tcp_args(serve, "--listen", "serve ISO 8583 (or JSON) frames over TCP, not MQTT")
    serve.add_argument(
        "--tpdu", action="store_true", help="with --listen: each frame carries a 5-byte TPDU"
    )
    serve.add_argument(
        "--standard-terminals",
        metavar="FILE",
        help="with --listen: terminals that speak plain ISO 8583:1987 (outside tools), "
        'JSON {"TID": {"mac": "x919", "key": HEX} or {"mac": "none"}} (docs/tcp.md)',
    )
    serve.set_defaults(func=cmd_acquirer_serve)
    from .provisioning import add_provision_command

    add_provision_command(acq_sub)

    term = sub.add_parser("terminal", help="a terminal firmware in real time over MQTT")
    term_sub = term.add_subparsers(dest="terminal_command", required=True)
    run = term_sub.add_parser("run", help="run purchases from a script, stdin or a scenario")
    run.add_argument(
        "--broker", help="mqtt://[user:pass@]host:port (default: private broker with an acquirer)"
    )
    _add_tcp_args(run, "--host", "talk to a host on TCP (acquirer serve --listen), not MQTT")
    run.add_argument(
        "--standard-host",
        metavar="FILE",
        help="with --host: the host speaks plain ISO 8583:1987; FILE says how this terminal's "
        'link is signed, {"TID": {"mac": "x919", "key": HEX} or {"mac": "none"}} (docs/tcp.md)',
    )
    run.add_argument(
        "--firmware", default="reference", help="reference, zoo:NAME, module:Class, exec:COMMAND"
    )
    run.add_argument("--id", default="T0001", help="terminal id (default T0001)")
    run.add_argument(
        "--keys",
        metavar="FILE",
        help=f"key file with this terminal's MAC key (and broker password), as "
        f"`acquirer serve` writes it; or set ${KEYS_ENV}. Needed with --broker",
    )
    run.add_argument("--journal", help="journal SQLite file (default: ./<id>.journal.db)")
    run.add_argument(
        "--timeout-ms",
        type=_positive_int,
        metavar="MS",
        help="the firmware's response timeout (default: its own, 15000 for the reference)",
    )
    run.add_argument(
        "--partial-approval",
        action="store_true",
        help="take partial approvals (RC 10: asks with processing code 000001; test card "
        "4000000000000010)",
    )
    run.add_argument(
        "--chip",
        action="store_true",
        help="read cards by chip: the card must accept each approval; a script line "
        "AMOUNT PAN decline (or removed) makes that card refuse it",
    )
    run.add_argument(
        "--offline-floor",
        type=int,
        default=0,
        metavar="MINOR",
        help="approve a sale of at most MINOR units offline when the host does not "
        "answer, and upload it later as an advice (0220); default 0: never",
    )
    run.add_argument("--codec", choices=CODECS, default="iso8583")
    run.add_argument("--via-proxy", action="store_true", help="publish to up/, listen on down/")
    src = run.add_mutually_exclusive_group()
    src.add_argument(
        "--script",
        help="file of lines: AMOUNT [PAN [decline|removed]], SCAN AMOUNT [CODE] (a wallet "
        "payment), PREAUTH AMOUNT [PAN] (a hold), BATCH (close the batch), VOID N, REFUND N "
        "[AMOUNT], COMPLETE N [AMOUNT] or TIP N TIP (of the N-th payment)",
    )
    src.add_argument("--stdin", action="store_true", help="read AMOUNT PAN lines from stdin")
    src.add_argument("--scenario", help="scenario TOML: its purchase steps, in order")
    run.set_defaults(func=cmd_terminal_run)

    register_fleet(sub, cmd_fleet)


def _setup_logging() -> None:
    level = os.environ.get("POSHARNESS_LOG", "WARNING").upper()
    logging.basicConfig(level=level, format="%(name)s: %(message)s", stream=sys.stderr)


@contextmanager
def _broker_or(
    url: str | None,
    users: list[str],
    passwords: dict[str, str] | None = None,
    *,
    fleet_workers: int = 0,
    service_users: list[str] | None = None,
) -> Iterator[tuple[Broker | None, BrokerAddress]]:
    if url:
        yield None, BrokerAddress.parse(url)
        return
    try:
        broker = start_private_broker(
            users,
            passwords=passwords,
            extra_service_users=fleet_worker_users(fleet_workers) + (service_users or []),
        )
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        yield broker, broker.address()
    finally:
        broker.close()


def _login(broker: Broker | None, address: BrokerAddress, user: str) -> BrokerAddress:
    if broker is None:
        return address
    return broker.address(user)


def _serve_keys(args: argparse.Namespace) -> tuple[str, dict[str, TerminalSecret]] | None:
    """The key file `acquirer serve` uses (created with random keys if missing), or None."""
    from . import keys as keyfile

    path = args.keys or f"{args.db}.keys.json"
    if args.keys is None and args.provision == 0:
        return None
    if not Path(path).exists():
        if args.provision < 0 or args.provision > MAX_PROVISION:
            raise KeyFileError(f"--provision must be between 0 and {MAX_PROVISION}")
        from .hostdb import terminal_id

        tids = [terminal_id(n) for n in range(1, args.provision + 1)]
        keyfile.write_key_file(path, keyfile.generate(tids))
        print(f"acquirer: wrote {len(tids)} terminal key(s) to {path} (mode 0600)", flush=True)
    return path, keyfile.load_key_file(path)


# Terminals `acquirer serve --provision N` may create keys for (ids T0001..T9999).
MAX_PROVISION = 9999


def cmd_acquirer_serve(args: argparse.Namespace) -> int:
    from .host_service import HostService
    from .hostdb import provision
    from .keys import mac_keys

    _setup_logging()
    if args.rate_limit < 0:
        print("error: --rate-limit must be >= 0", file=sys.stderr)
        return 2
    if args.standard_terminals is not None and args.listen is None:
        print("error: --standard-terminals needs --listen tcp://HOST:PORT", file=sys.stderr)
        return 2
    from .hostdb import serve_db_problem

    problem = serve_db_problem(args.db, args.share, args.listen, args.keys, args.provision)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        found = _serve_keys(args)
    except (KeyFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    users: list[str] = []
    passwords: dict[str, str] = {}
    if found is not None:
        provision(args.db, mac_keys(found[1]))
    if args.listen is not None:
        from harness.tcp.commands import serve_tcp

        return serve_tcp(args)
    if found is not None:
        passwords = {t: s.broker_password for t, s in found[1].items() if s.broker_password}
        users = sorted(passwords)
    with _broker_or(args.broker, users, passwords) as (broker, address):
        addr = _login(broker, address, "acquirer")

        async def main() -> None:
            service = HostService(
                addr, args.db, rate_limit_per_s=args.rate_limit, share=args.share or ""
            )
            await service.start()
            print(f"acquirer: serving {addr.url()} db={args.db}", flush=True)
            if found is not None:
                path, secrets_ = found
                first = min(secrets_, default="T0001")
                login = f"{first}@" if broker is not None and broker.auth else ""
                print(
                    f"acquirer: terminals connect with: posharness terminal run "
                    f"--broker mqtt://{login}{addr.host}:{addr.port} --id {first} "
                    f"--keys {path}  (each terminal needs only its own entry of {path})",
                    flush=True,
                )
            stopping = asyncio.Event()
            _stop_on_signals(stopping.set)
            print("ready", flush=True)
            try:
                await stopping.wait()
            finally:
                await service.stop()
            print("acquirer: stopped", flush=True)

        with suppress(KeyboardInterrupt):
            asyncio.run(main())
    return 0


def _stop_on_signals(stop: Callable[[], object]) -> None:
    """SIGTERM and SIGINT call `stop` on the running loop, so that every `finally`
    runs: the host commits and answers its open group, the private broker stops and
    its temporary directory goes (the default SIGTERM would end the process at once
    and leave both behind)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)


def _cancel_on_signals() -> None:
    """SIGTERM/SIGINT cancel the current task (its `finally` blocks clean up)."""
    task = asyncio.current_task()
    assert task is not None
    _stop_on_signals(task.cancel)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _config(args: argparse.Namespace, mac_key: bytes, **extra: Any) -> FirmwareConfig:
    """`terminal run`'s firmware config: its id and key, and the options asked for."""
    from .terminal_driver import terminal_config

    overrides: dict[str, Any] = {"partial_approval": args.partial_approval, "chip": args.chip}
    if getattr(args, "offline_floor", 0) > 0:
        overrides["offline_floor"] = args.offline_floor
    if args.timeout_ms is not None:
        overrides["response_timeout_ms"] = args.timeout_ms
    return terminal_config(args.id, mac_key, **overrides, **extra)


_CHIP_WORDS = {"decline": CHIP_DECLINED, "removed": CHIP_REMOVED}


def _purchases(
    args: argparse.Namespace, chips: dict[str, str] | None = None
) -> list[tuple[int, str, str] | Credit | None]:
    """The purchases to make, in order: (amount, PAN or wallet code, the payment's
    kind: "purchase", "scan" or "preauth"), None for a batch close, or a
    void, refund, completion or tip of an earlier payment
    (harness/mqtt/credit_lines.py). Chip cards that refuse an approval go into
    `chips` (PAN -> "declined" or "removed")."""
    from acquirer.catalogue import CODE_PAYS, PAN_APPROVE

    if chips is None:
        chips = {}

    lines: list[str]
    if args.scenario:
        from scenarios.loader import load_scenario

        sc = load_scenario(args.scenario)
        if sc.faults:
            # Silently dropping the file's faults would turn a fault test into a
            # plain run that passes: refuse, and name the command that applies them.
            raise ValueError(
                f"{args.scenario}: has {len(sc.faults)} fault(s); `terminal run` carries "
                f"out purchases only. Run it with its faults over MQTT: "
                f"posharness run {args.scenario} --transport mqtt"
            )
        chips.update({c.pan: _CHIP_WORDS[c.chip] for c in sc.cards if c.chip})
        return [
            (s.amount, s.card, s.action)
            if s.action in PAYMENT_ACTIONS
            else (Credit(s.action, s.sale, s.amount) if s.action in CREDIT_ACTIONS else None)
            for s in sc.steps
            if s.action in (*PAYMENT_ACTIONS, "batch_close", *CREDIT_ACTIONS)
        ]
    if args.script:
        lines = Path(args.script).read_text().splitlines()
    elif args.stdin:
        lines = sys.stdin.read().splitlines()
    else:
        lines = [f"1250 {PAN_APPROVE}"]
    out: list[tuple[int, str, str] | Credit | None] = []
    for n, line in enumerate(lines, 1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if parts == ["BATCH"]:
            out.append(None)
            continue
        if parts[0] in CREDIT_WORDS:
            out.append(parse_credit(n, parts, line))
            continue
        kind = {"SCAN": "scan", "PREAUTH": "preauth"}.get(parts[0], "purchase")
        wallet = kind == "scan"
        if kind != "purchase":
            parts = parts[1:]
        try:
            amount = int(parts[0])
        except (ValueError, IndexError):
            raise ValueError(
                f"line {n}: expected AMOUNT [PAN], SCAN AMOUNT [CODE], PREAUTH AMOUNT [PAN] or "
                f"BATCH, got {line!r}"
            ) from None
        default = CODE_PAYS if wallet else PAN_APPROVE
        if len(parts) == 3 and not wallet and parts[2] in _CHIP_WORDS:
            chips[parts[1]] = _CHIP_WORDS[parts[2]]
        elif len(parts) > 2:
            raise ValueError(
                f"line {n}: after AMOUNT PAN only decline or removed (a chip card that "
                f"refuses the approval), got {line!r}"
            )
        out.append((amount, parts[1] if len(parts) > 1 else default, kind))
    return out


def _terminal_secret(args: argparse.Namespace) -> TerminalSecret:
    """This terminal's secrets: from --keys (or $POSHARNESS_KEYS); with a private
    broker and in-process host and no key file, a random key for this run alone."""
    from . import keys as keyfile

    path = args.keys or os.environ.get(KEYS_ENV)
    if path:
        return keyfile.secret_for(path, keyfile.load_key_file(path), args.id)
    if args.broker or args.host:
        raise KeyFileError(
            f"--{'broker' if args.broker else 'host'} needs this terminal's key: --keys FILE "
            f"(or ${KEYS_ENV}), the key file `posharness acquirer serve` wrote"
        )
    return keyfile.generate([args.id])[args.id]


async def _drive(
    driver: TerminalDriver, purchases: list[tuple[int, str, str] | Credit | None]
) -> int:
    """Boot `driver`, make `purchases` (None: a batch close; a Credit: a void or refund),
    print one JSON line per outcome and then the receipts; the number of purchases not
    approved."""
    driver.boot()
    # Let the terminal finish what its journal left unfinished (resends, reversals, the
    # owed receipt and its "LAST SALE APPROVED" display) before the first purchase:
    # otherwise a recovery display would be taken for the new purchase's outcome
    # (bench/durability.py found it).
    await driver.idle.wait()
    failed = 0
    paid: list[Intent] = []  # the payments so far, for voids and refunds to name
    for item in purchases:
        if isinstance(item, Credit):
            await drive_credit(driver, item, paid)
            continue
        if item is None:
            await driver.close_batch()
            print(json.dumps({"batch_close": "done"}), flush=True)
            continue
        amount, pan, kind = item
        intent = await driver.purchase(amount, pan, kind == "scan", kind == "preauth")
        paid.append(intent)
        outcome = {"amount": amount, "outcome": intent.outcome, "text": intent.text}
        outcome |= {"latency_ms": round(intent.latency_ms, 2), "key": intent.key}
        print(json.dumps(outcome), flush=True)
        failed += intent.outcome != "approved"
    # Let background work (reversals, receipts) finish before exiting.
    await driver.idle.wait()
    for r in driver.receipts:
        print(json.dumps({"receipt": r.to_dict()}), flush=True)
    return failed


def cmd_terminal_run(args: argparse.Namespace) -> int:
    from harness.runner import load_firmware

    from .host_service import HostService
    from .hostdb import provision
    from .journal import Journal
    from .terminal_driver import single_terminal

    _setup_logging()
    factory = load_firmware(args.firmware)
    try:
        args.chip_cards = {}
        purchases = _purchases(args, args.chip_cards)
        secret = _terminal_secret(args)
    except ValueError as exc:  # KeyFileError included
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.standard_host is not None and args.host is None:
        print("error: --standard-host needs --host tcp://HOST:PORT", file=sys.stderr)
        return 2
    if args.host is not None:
        # A plain ISO 8583:1987 host has no status inquiry (0600): run without it.
        plain = {"status_inquiry": False} if args.standard_host is not None else {}
        cfg = _config(args, secret.mac_key, **plain)
        from harness.tcp.commands import terminal_run_tcp

        return terminal_run_tcp(args, factory(cfg), cfg, purchases)
    journal_path = args.journal or f"{args.id}.journal.db"
    with _broker_or(args.broker, [args.id]) as (broker, address):
        if broker is None and address.username is None and secret.broker_password:
            address = address.with_login(args.id, secret.broker_password)
        elif broker is None and address.password is None and secret.broker_password:
            address = address.with_login(address.username, secret.broker_password)

        async def main() -> int:
            host: HostService | None = None
            tmp = None
            if broker is not None:
                tmp = tempfile.TemporaryDirectory(prefix="posharness-host-")
                db = str(Path(tmp.name) / "host.db")
                provision(db, {args.id: secret.mac_key})
                host = HostService(broker.address("acquirer"), db)
                await host.start()
            cfg = _config(args, secret.mac_key)
            journal = Journal(journal_path)
            client, driver = single_terminal(
                _login(broker, address, args.id),
                factory(cfg),
                cfg,
                journal,
                codec=args.codec,
                via_proxy=args.via_proxy,
            )
            driver.chip_cards = args.chip_cards
            _cancel_on_signals()
            try:
                await client.start()
                failed = await _drive(driver, purchases)
            finally:
                await client.stop()
                journal.close()
                if host is not None:
                    await host.stop()
                if tmp is not None:
                    tmp.cleanup()
            return 1 if failed else 0

        try:
            return asyncio.run(main())
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("terminal: interrupted; stopped cleanly (journal kept)", file=sys.stderr)
            return 1


def cmd_fleet(args: argparse.Namespace) -> int:
    """`posharness fleet` (harness/mqtt/cli_fleet.py)."""
    from .cli_fleet import cmd_fleet as run

    return run(args)


def print_report(report: Any) -> None:
    j = report.to_json()
    lat = j["latency_ms"]
    outcomes = ", ".join(f"{n} {outcome}" for outcome, n in sorted(j["outcomes"].items()))
    print(f"purchases   {j['completed']}/{j['offered']} completed  ({outcomes or 'none'})")
    print(f"throughput  {j['throughput_per_s']} purchases/s")
    print(f"latency     p50 {lat['p50']} ms  p95 {lat['p95']} ms  p99 {lat['p99']} ms")
    print(f"retries     {j['retries']}   reversals {j['reversals']}")
    done = max(1, j["completed"])
    cpu = f"cpu         fleet {j['fleet_cpu_s'] * 1e6 / done:.0f} us/purchase"
    if j["host_cpu_s"] is not None:
        cpu += f", host {j['host_cpu_s'] * 1e6 / done:.0f} us/purchase"
    print(cpu)
    if j.get("faults"):
        print("faults      " + ", ".join(f"{k} {n}" for k, n in j["faults"].items()))
    for name, problems in report.invariants.items():
        print(
            f"{'ok  ' if not problems else 'FAIL'}  {name}"
            + (f": {problems[0]}" if problems else "")
        )
