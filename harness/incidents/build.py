"""Build stage: run the stages in order and assemble the scenario."""

from pathlib import Path
from typing import Any

import faults
from acquirer.protocol import MTI_PURCHASE
from scenarios.model import (
    INVARIANT_NAMES,
    Expect,
    HostSpec,
    NetworkSpec,
    Scenario,
    ScenarioError,
    Step,
    TerminalSpec,
)

from .infer import _forge, _host_inference, _network_faults, _power_fault
from .match import _match, estimate_clock
from .model import Imported
from .parse import HOST_EVENTS, TERMINAL_EVENTS, Entry, Log, parse_log, parse_ts
from .people import _cards, _people, _prints_without_approval
from .verify import _verify


def _faults_sorted(plan: list[tuple[int, faults.Fault]]) -> list[faults.Fault]:
    # Host faults in a fixed order (slow_host, rc_burst, host_crash) so their nth
    # counters see the arrivals the importer counted; the rest in time order.
    order = {"slow_host": 0, "rc_burst": 1, "host_crash": 2}
    return [f for _, f in sorted(plan, key=lambda p: (order.get(p[1].KIND, -1), p[0]))]


def _merge(plan: list[tuple[int, faults.Fault]]) -> list[tuple[int, faults.Fault]]:
    """Merge faults that differ only by consecutive nth into one with a count."""
    out: list[tuple[int, faults.Fault]] = []
    for t, f in plan:
        if out and f.nth >= 1:
            pt, prev = out[-1]
            same = prev.to_table() | {"nth": 0, "count": 1} == f.to_table() | {"nth": 0, "count": 1}
            if same and prev.KIND == f.KIND and prev.nth + prev.count == f.nth:
                merged = faults.build_fault(f.KIND, prev.to_table() | {"count": prev.count + 1})
                out[-1] = (pt, merged)
                continue
        out.append((t, f))
    return out


def import_logs(
    terminal_log: Path,
    host_log: Path,
    *,
    firmware: str | None = None,
    name: str = "",
    description: str = "",
    seed: int = 0,
    verify: bool = True,
) -> Imported:
    """Infer a scenario from a terminal log and a host log (see the module doc)."""
    problems: list[str] = []
    tlog = parse_log(terminal_log, TERMINAL_EVENTS, problems)
    hlog = parse_log(host_log, HOST_EVENTS, problems)
    unexplained: list[str] = []
    notes: list[str] = []
    if not tlog.entries:
        raise ScenarioError(f"{terminal_log}: no readable terminal log lines")
    origin = tlog.entries[0].ts_ms
    tsp = TerminalSpec()
    header = tlog.header
    config = header.get("config", {}) if isinstance(header.get("config"), dict) else {}
    tid = next(
        (str(e.data["terminal"]) for e in tlog.entries if isinstance(e.data.get("terminal"), str)),
        tsp.id,
    )
    term_kwargs: dict[str, Any] = {"id": tid}
    if isinstance(header.get("merchant"), str) and header["merchant"]:
        term_kwargs["merchant_id"] = header["merchant"]
    for key, value in config.items():
        if key in TerminalSpec.__dataclass_fields__ and isinstance(value, int):
            term_kwargs[key] = value
        else:
            unexplained.append(f"{terminal_log}: config {key}={value!r} not understood, ignored")
    fw = firmware or (header.get("firmware") if isinstance(header.get("firmware"), str) else None)
    fw = fw or "reference"

    def rel(e: Entry) -> int:
        return e.ts_ms - origin

    def where(log: Log, e: Entry) -> str:
        return f"{log.path}:{e.line}"

    t_sends = [(rel(e), e.data, e.line) for e in tlog.entries if e.event == "send"]
    t_recvs = [(rel(e), e.data, e.line) for e in tlog.entries if e.event == "recv"]
    h_recvs_raw = [(rel(e), e.data, e.line) for e in hlog.entries if e.event == "recv"]
    h_sends_raw = [(rel(e), e.data, e.line) for e in hlog.entries if e.event == "send"]
    skew, latency, pairs = estimate_clock(t_sends, t_recvs, h_recvs_raw, h_sends_raw)
    if pairs == 0:
        unexplained.append(
            f"no request/response pair found in both logs: clock skew {skew} ms assumes a "
            f"one-way latency of {latency} ms"
        )

    def hrel(e: Entry) -> int:
        return e.ts_ms - origin - skew

    h_recvs = [(hrel(e), e.data, e.line) for e in hlog.entries if e.event == "recv"]
    h_sends = [(hrel(e), e.data, e.line) for e in hlog.entries if e.event == "send"]

    plan: list[tuple[int, faults.Fault]] = []

    # Terminal power: off windows (a message arriving then is lost, not dropped).
    off_windows: list[tuple[int, int]] = []
    power_entries = [e for e in tlog.entries if e.event == "power"]
    for i, e in enumerate(power_entries):
        if e.data["state"] != "off":
            continue
        on = next((p for p in power_entries[i + 1 :] if p.data["state"] == "on"), None)
        t_off = rel(e)
        t_on = rel(on) if on is not None else 1 << 62
        off_windows.append((t_off, t_on))
        if e.data.get("reason") == "watchdog":
            notes.append(
                f"{where(tlog, e)}: the firmware crashed and the watchdog rebooted it: "
                "not a fault, the firmware reproduces it"
            )
            continue
        if on is None:
            unexplained.append(f"{where(tlog, e)}: power went off and never came back")
            continue
        plan.append((t_off, _power_fault(tlog, e, t_off, t_on - t_off, notes)))

    def terminal_off(t: int) -> bool:
        return any(a <= t < b for a, b in off_windows)

    # Host crashes: down windows (a request arriving then is lost, not dropped).
    down_windows: list[tuple[int, int]] = []
    host_entries = sorted(hlog.entries, key=lambda e: e.ts_ms)
    for e in host_entries:
        if e.event == "crash":
            try:
                until = parse_ts(e.data["down_until"]) - origin - skew
            except ValueError:
                unexplained.append(f"{where(hlog, e)}: bad down_until, crash ignored")
                continue
            down_windows.append((hrel(e), until))

    # Host timing: decisions paired with the arrival they answer.
    processing, host_faults = _host_inference(hlog, host_entries, hrel, unexplained, notes)
    plan.extend(host_faults)

    # Requests: terminal -> host.
    hops, orphans = _match(t_sends, h_recvs, latency)
    for hop in hops:
        _network_faults(
            hop,
            "to_host",
            latency,
            plan,
            notes,
            tlog.path,
            lambda t: any(a <= t < b for a, b in down_windows),
            unexplained,
        )
    for _t, data, line in orphans:
        unexplained.append(
            f"{hlog.path}:{line}: host received {data['mti']} stan {data['stan']} that the "
            "terminal never logged sending (corrupted in flight?)"
        )
    # Responses: host -> terminal.
    hops, orphans = _match(h_sends, t_recvs, latency)
    for hop in hops:
        _network_faults(
            hop, "to_terminal", latency, plan, notes, hlog.path, terminal_off, unexplained
        )
    purchase_sends = [(t, d) for t, d, _ in t_sends if d["mti"] == MTI_PURCHASE]
    for t, data, line in orphans:
        forged = _forge(t, data, purchase_sends, latency)
        if forged is None:
            unexplained.append(
                f"{tlog.path}:{line}: terminal received {data['mti']} stan {data['stan']} "
                "that the host never logged sending"
            )
            continue
        plan.append((t, forged))
        notes.append(
            f"{tlog.path}:{line}: {data['mti']} rc {data.get('rc', '')} rrn {data.get('rrn', '')} "
            "was never sent by the host: forged response -> "
            f"{forged.describe()}"
        )

    purchases, steps_extra, close_batch = _people(tlog, origin, plan, notes, unexplained)
    cards = _cards(purchases, hlog, unexplained)
    _prints_without_approval(tlog, hlog, plan, unexplained)

    plan_sorted = _faults_sorted(_merge(sorted(plan, key=lambda p: p[0])))
    steps = [Step(p.at_ms, "purchase", p.card, p.amount) for p in purchases] + steps_extra
    steps.sort(key=lambda s: s.at_ms)
    scenario = Scenario(
        name=name or Path(terminal_log).stem,
        description=description
        or f"Imported from {terminal_log} and {host_log} by posharness incident import.",
        seed=seed,
        firmware=fw,
        terminal=TerminalSpec(**term_kwargs),
        host=HostSpec(processing_ms=processing),
        network=NetworkSpec(latency_ms=latency),
        cards=tuple(cards),
        steps=tuple(steps),
        faults=tuple(plan_sorted),
        expect=Expect(invariants=INVARIANT_NAMES),
        close_batch=close_batch,
    )
    imported = Imported(scenario, skew, latency, pairs, problems, unexplained, notes)
    if verify:
        _verify(imported, tlog, hlog)
    return imported
