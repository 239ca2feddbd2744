"""Build stage: run the stages in order and assemble the scenario."""

import dataclasses
from pathlib import Path
from typing import Any

import faults
from acquirer.catalogue import amount_rule
from acquirer.protocol import MTI_INQUIRY, MTI_PURCHASE
from scenarios.model import (
    INVARIANT_NAMES,
    Expect,
    HostSpec,
    NetworkSpec,
    PeopleSpec,
    Scenario,
    ScenarioError,
    Step,
    TerminalSpec,
)

from . import checks
from .credits import credit_steps
from .holds import check_hold_lines, hold_steps, sales_by_rrn
from .ids import sim_mid, sim_tid
from .infer import _forge, _host_inference, _network_faults
from .judge import judge_logs
from .match import Clock, Msg, _match, content, detect_step, estimate_clock, quads
from .model import Imported, _Purchase
from .offline import offline_settings
from .parse import HOST_EVENTS, TERMINAL_EVENTS, Entry, Log, parse_log
from .people import _cards, _people, _prints_without_approval, chip_answers
from .power import power_faults
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


@dataclasses.dataclass(slots=True)
class _Ctx:
    """What the stages share while one pair of logs is imported."""

    tlog: Log
    hlog: Log
    origin: int
    clock: Clock
    notes: list[str]
    unexplained: list[str]
    plan: list[tuple[int, faults.Fault]] = dataclasses.field(default_factory=list)

    def rel(self, e: Entry) -> int:
        return e.ts_ms - self.origin

    def hrel(self, e: Entry) -> int:
        return e.ts_ms - self.origin - self.clock.skew_ms

    def msgs(self, log: Log, event: str, host: bool) -> list[Msg]:
        at = self.hrel if host else self.rel
        return [(at(e), e.data, e.line) for e in log.entries if e.event == event]


def terminals_in(
    terminal_log: Path, host_log: Path, tz: Any = None, fmt: str = "jsonl"
) -> list[str]:
    """The terminal ids the terminal log names, in order of first appearance (more
    than one when several terminals' lines are interleaved in one file)."""
    if fmt == "jsonl":
        checks.check_order(terminal_log, host_log)
    return checks.terminals_of(parse_log(terminal_log, TERMINAL_EVENTS, [], tz, fmt))


def import_logs(
    terminal_log: Path,
    host_log: Path,
    *,
    firmware: str | None = None,
    name: str = "",
    description: str = "",
    seed: int = 0,
    verify: bool = True,
    tz: Any = None,
    fmt: str = "jsonl",
    terminal: str | None = None,
) -> Imported:
    """Infer a scenario from a terminal log and a host log (see the package doc).
    `terminal` picks one terminal of a log that interleaves several.
    Whole-file and whole-pair problems raise ScenarioError (one line)."""
    if fmt == "jsonl":
        checks.check_order(terminal_log, host_log)
    problems: list[str] = []
    tlog = parse_log(terminal_log, TERMINAL_EVENTS, problems, tz, fmt)
    hlog = parse_log(host_log, HOST_EVENTS, problems, tz, fmt)
    notes: list[str] = []
    unexplained: list[str] = []
    if terminal is not None:
        checks.only_terminal(tlog, terminal)
    tid = checks.terminal_of(tlog)
    checks.keep_terminal(hlog, tid, notes)
    check_hold_lines(tlog)
    ctx, steps_found = _align(tlog, hlog, notes, unexplained)
    processing, test_amounts = _host_side(ctx)
    _network_side(ctx)
    purchases, steps_extra, close_batch = _people(tlog, ctx.origin, ctx.plan, notes, unexplained)
    sales = sales_by_rrn(tlog, hlog, purchases)
    steps_extra += credit_steps(tlog, ctx.origin, purchases, notes, sales)
    steps_extra += hold_steps(tlog, hlog, ctx.origin, purchases, notes)
    terminal_spec = _terminal(tlog, tid, notes, unexplained)
    chips = chip_answers(tlog, ctx.origin, ctx.plan, notes) if terminal_spec.chip else {}
    cards = _cards(purchases, tlog, hlog, unexplained, test_amounts, chips, notes)
    _prints_without_approval(tlog, hlog, ctx.plan, unexplained)
    scenario = Scenario(
        name=name or Path(terminal_log).stem,
        description=description
        or f"Imported from {terminal_log} and {host_log} by posharness incident import.",
        seed=seed,
        firmware=_firmware(firmware, tlog.header, notes),
        terminal=terminal_spec,
        host=HostSpec(processing_ms=processing, test_amounts=test_amounts),
        network=NetworkSpec(latency_ms=ctx.clock.latency_ms),
        people=_people_spec(purchases, notes),
        cards=tuple(cards),
        steps=tuple(_steps(purchases, steps_extra)),
        faults=tuple(_faults_sorted(_merge(sorted(ctx.plan, key=lambda p: p[0])))),
        expect=Expect(invariants=INVARIANT_NAMES),
        close_batch=close_batch,
    )
    c = ctx.clock
    imported = Imported(scenario, c.skew_ms, c.latency_ms, c.pairs, problems, unexplained, notes)
    imported.jitter_ms, imported.spread_ms, imported.clock_steps = (
        c.jitter_ms,
        c.spread_ms,
        steps_found,
    )
    imported.logged_violations = judge_logs(tlog, hlog)
    if verify:
        _verify(imported, tlog, hlog)
    return imported


def _align(
    tlog: Log, hlog: Log, notes: list[str], unexplained: list[str]
) -> tuple[_Ctx, list[str]]:
    """Clock skew, latency and jitter; a terminal clock step is found, reported and
    taken out of the terminal's times first."""
    if not tlog.entries:
        raise ScenarioError(f"{tlog.path}: no readable terminal log lines")
    origin = tlog.entries[0].ts_ms
    probe = _Ctx(tlog, hlog, origin, Clock(0, 0, 0, 0, 0), notes, unexplained)
    sides = ("send", False), ("recv", False), ("recv", True), ("send", True)
    qs = quads(*(probe.msgs(tlog if not h else hlog, ev, False) for ev, h in sides))
    steps_found: list[str] = []
    step = detect_step(qs, [dataclasses.replace(e, ts_ms=e.ts_ms - origin) for e in tlog.entries])
    if step is not None:
        tlog.entries = [
            dataclasses.replace(e, ts_ms=e.ts_ms - step.step_ms) if e.line >= step.line else e
            for e in tlog.entries
        ]
        text = (
            f"{tlog.path}:{step.line}: the terminal clock stepped {step.step_ms:+d} ms here "
            f"({step.before} exchanges before, {step.after} after); later times corrected"
        )
        steps_found.append(text)
        notes.append(text + " [likely]")
        qs = quads(*(probe.msgs(tlog if not h else hlog, ev, False) for ev, h in sides))
    # Times are relative to the earliest terminal line: a clock that went back
    # without a measurable step must not give a step a negative time.
    origin = probe.origin = min(e.ts_ms for e in tlog.entries)
    if origin < tlog.entries[0].ts_ms:
        unexplained.append(
            f"{tlog.path}: the terminal's times go back {tlog.entries[0].ts_ms - origin} ms "
            "below the first line and no clock step could be measured from the exchanges"
        )
        qs = quads(*(probe.msgs(tlog if not h else hlog, ev, False) for ev, h in sides))
    t_sends = probe.msgs(tlog, "send", False)
    h_recvs = probe.msgs(hlog, "recv", False)
    by_content = {content(d): t for t, d, _ in h_recvs}
    one_way = [(t, by_content[content(d)]) for t, d, _ in t_sends if content(d) in by_content]
    checks.check_overlap(tlog, hlog, len(one_way), len(t_sends), len(h_recvs))
    clock = estimate_clock(qs, one_way)
    if clock.pairs == 0:
        unexplained.append(
            f"no request/response pair found in both logs: clock skew {clock.skew_ms} ms "
            f"assumes a one-way latency of {clock.latency_ms} ms"
        )
    return _Ctx(tlog, hlog, origin, clock, notes, unexplained), steps_found


def _host_side(ctx: _Ctx) -> tuple[int, bool]:
    """Host processing time and faults; whether the host applied the test-card
    catalogue's amount rules (only a test host does: real amounts must not change
    the replay's outcome)."""
    test_amounts = any(
        e.event == "decision"
        and e.data["mti"] == MTI_PURCHASE
        and isinstance(e.data.get("amount"), int)
        and amount_rule(int(e.data["amount"])) not in (None, "00")
        and amount_rule(int(e.data["amount"])) == e.data.get("rc")
        for e in ctx.hlog.entries
    )
    if test_amounts:
        ctx.notes.append(
            "the host applied the test-card catalogue's amount rules: kept on [likely]"
        )
    host_entries = sorted(ctx.hlog.entries, key=lambda e: e.ts_ms)
    processing, host_faults = _host_inference(
        ctx.hlog, host_entries, ctx.hrel, ctx.unexplained, ctx.notes, test_amounts
    )
    ctx.plan.extend(host_faults)
    return processing, test_amounts


def _network_side(ctx: _Ctx) -> None:
    """Drops, delays, duplicates and forgeries, from the paired messages."""
    tlog, hlog, clock = ctx.tlog, ctx.hlog, ctx.clock
    off_windows = power_faults(ctx.tlog, ctx.origin, ctx.plan, ctx.notes, ctx.unexplained)
    down_windows = [
        (ctx.hrel(e), int(e.data["down_until_ms"]) - ctx.origin - clock.skew_ms)
        for e in hlog.entries
        if e.event == "crash"
    ]
    t_sends, t_recvs = ctx.msgs(tlog, "send", False), ctx.msgs(tlog, "recv", False)
    h_recvs, h_sends = ctx.msgs(hlog, "recv", True), ctx.msgs(hlog, "send", True)
    slack = clock.jitter_ms + clock.spread_ms

    def host_down(t: int) -> bool:
        return any(a <= t < b for a, b in down_windows)

    def terminal_off(t: int) -> bool:
        return any(a <= t < b for a, b in off_windows)

    for direction, sends, recvs, path, down in (
        ("to_host", t_sends, h_recvs, tlog.path, host_down),
        ("to_terminal", h_sends, t_recvs, hlog.path, terminal_off),
    ):
        hops, orphans = _match(sends, recvs, slack)
        for hop in hops:
            _network_faults(
                hop,
                direction,
                clock.latency_ms,
                ctx.plan,
                ctx.notes,
                path,
                down,
                ctx.unexplained,
                clock.jitter_ms,
            )
        if direction == "to_host":
            for _t, data, line in orphans:
                ctx.unexplained.append(
                    f"{hlog.path}:{line}: host received {data['mti']} stan {data['stan']} that "
                    "the terminal never logged sending (corrupted in flight?)"
                )
        else:
            _forgeries(ctx, orphans, t_sends)


def _forgeries(ctx: _Ctx, orphans: list[Msg], t_sends: list[Msg]) -> None:
    purchase_sends = [(t, d) for t, d, _ in t_sends if d["mti"] == MTI_PURCHASE]
    for t, data, line in orphans:
        forged = _forge(t, data, purchase_sends, ctx.clock.latency_ms)
        if forged is None:
            ctx.unexplained.append(
                f"{ctx.tlog.path}:{line}: terminal received {data['mti']} stan {data['stan']} "
                "that the host never logged sending"
            )
            continue
        ctx.plan.append((t, forged))
        ctx.notes.append(
            f"{ctx.tlog.path}:{line}: {data['mti']} rc {data.get('rc', '')} rrn "
            f"{data.get('rrn', '')} was never sent by the host: forged response -> "
            f"{forged.describe()} [sure]"
        )


def _firmware(given: str | None, header: dict[str, Any], notes: list[str]) -> str:
    """--firmware, else the header's when the simulator has it, else reference: a
    vendor's firmware name (\"VeriPOS 4.2.1\") is not a firmware to run."""
    if given:
        return given
    named = header.get("firmware")
    if not isinstance(named, str) or not named:
        return "reference"
    from harness.runner import UsageError, is_builtin_firmware, load_firmware

    try:
        # A log header never chooses code: only the firmwares posharness ships.
        if not is_builtin_firmware(named):
            raise UsageError(named)
        load_firmware(named)
    except UsageError:
        notes.append(
            f"firmware {named!r} (log header) is not one the simulator has: imported with "
            "reference; give --firmware to replay another (a zoo firmware or module:Class)"
        )
        return "reference"
    return named


def _terminal(tlog: Log, tid: str, notes: list[str], unexplained: list[str]) -> TerminalSpec:
    header = tlog.header
    kwargs: dict[str, Any] = {"id": sim_tid(tid) if tid else TerminalSpec().id}
    if tid and kwargs["id"] != tid:
        notes.append(f"terminal id {tid!r} replayed as {kwargs['id']!r} [sure]")
    merchant = header.get("merchant")
    if isinstance(merchant, str) and merchant:
        kwargs["merchant_id"] = sim_mid(merchant)
        if kwargs["merchant_id"] != merchant:
            notes.append(f"merchant id {merchant!r} replayed as {kwargs['merchant_id']!r} [sure]")
    config = header.get("config", {}) if isinstance(header.get("config"), dict) else {}
    if not any(e.event == "send" and e.data.get("mti") == MTI_INQUIRY for e in tlog.entries):
        # The logged terminal never asked the host what became of a sale: replayed
        # without the status inquiry, as it reversed (or failed) at once.
        kwargs["status_inquiry"] = False
    for key, value in config.items():
        if key in TerminalSpec.__dataclass_fields__ and key != "id" and isinstance(value, int):
            kwargs[key] = value
        else:
            unexplained.append(f"{tlog.path}: config {key}={value!r} not understood, ignored")
    kwargs.update(offline_settings(tlog, config, notes))
    return TerminalSpec(**kwargs)


def _people_spec(purchases: list[_Purchase], notes: list[str]) -> PeopleSpec:
    """The cashier's retry policy, from the retries seen."""
    gaps = [g for p in purchases for g in p.retry_gaps]
    if not gaps:
        return PeopleSpec()
    retries = max(len(p.retry_gaps) for p in purchases)
    gap = sorted(gaps)[len(gaps) // 2]
    notes.append(f"the cashier retried FAILED sales up to {retries} times, ~{gap} ms later")
    return PeopleSpec(retry_on_failed=retries, retry_after_ms=gap)


def _steps(purchases: list[_Purchase], extra: list[Step]) -> list[Step]:
    steps = [
        Step(p.at_ms, "preauth" if p.preauth else "purchase", p.card, p.amount) for p in purchases
    ] + extra
    return sorted(steps, key=lambda s: s.at_ms)
