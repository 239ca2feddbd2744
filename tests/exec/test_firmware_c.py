"""The C example's own promises, beyond the traces shared with the JavaScript one
(tests/exec/test_examples.py): posfw.c refuses a broken pipe protocol with one line
on stderr naming the line or event, answers what it does not know with nothing,
reads numbers as the reference types them, and the firmware runs the incident
suite and generated scenarios under AddressSanitizer and UBSan (any memory error or
undefined behaviour aborts it: a crash, so a trace unlike the reference's)."""

from __future__ import annotations

import io
import json
import random
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from acquirer.protocol import Message
from harness.cli import main
from harness.exec_firmware import ExecFactory
from harness.runner import needed_features
from harness.strategies import scenarios
from scenarios.loader import load_scenario
from scenarios.model import Scenario
from terminal.firmware import (
    AmountKeyed,
    BatchCloseRequested,
    CancelPressed,
    CardPresented,
    ConfirmPressed,
    Event,
    MessageReceived,
    Print,
    PrintFinished,
    PrintStatus,
    ReprintRequested,
    Send,
    TimerExpired,
)
from terminal.reference import ReferenceFirmware
from terminal.testing import Rig, respond

from .examples import SKIP_C, SKIP_SAN, c_firmware, same_as_reference

# The C and JavaScript examples are card-only ports of the reference that take no
# partial approvals (they declare no feature): compared on the scenarios needing none.
SUITE = sorted(
    p for p in Path("scenarios/incidents").glob("*.toml") if not needed_features(load_scenario(p))
)
HELLO = json.dumps(
    {
        "type": "hello",
        "protocol": 1,
        "config": {
            "terminal_id": "T0001",
            "merchant_id": "M000000000001",
            "response_timeout_ms": 15_000,
            "max_sends": 2,
            "reversal_backoff_ms": [0, 1_000],
            "reversal_max_tries": 60,
            "debounce_ms": 3_000,
            "amount_max": 99_999_999,
        },
    }
)
PAN = "4000000000000002"
BOOT = '{"n":1,"type":"Boot","journal":[],"nonce":"0000abcd"}'


def _binary(sanitize: bool = False) -> str:
    spec = c_firmware(sanitize=sanitize)
    if spec is None:
        if sanitize and c_firmware() is not None:
            pytest.skip(SKIP_SAN)
        pytest.skip(SKIP_C)
    return spec.removeprefix("exec:")


def _talk(lines: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_binary()],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([HELLO, "not json"], "posfw: line 2: not a JSON object: not json"),
        ([BOOT], "posfw: line 1: an event (Boot) before hello"),
        ([HELLO.replace('"protocol": 1', '"protocol": 2')], "hello: protocol 2, this posfw"),
        ([HELLO, '{"type":"Boot","journal":[]}'], "line 2: n: missing or not a positive"),
        ([HELLO, '{"n":1,"type":"Boot"}'], "Boot.journal: missing or not a list"),
        ([HELLO, "[" * 100 + "x" * (16 << 20)], "posfw: line 2: an input line over 16777216"),
    ],
    ids=["not-json", "before-hello", "protocol", "no-n", "no-journal", "huge-line"],
)
def test_a_broken_protocol_ends_the_firmware_with_one_line_naming_where(
    lines: list[str], expected: str
) -> None:
    done = _talk(lines)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert expected in line


def test_unknown_events_get_no_effects_and_only_an_integer_is_an_amount() -> None:
    """As the reference: `type(amount) is int`, so 100.0, 1e2 and true are not amounts;
    an event a newer harness may add is answered with no effects."""
    events = [
        BOOT,
        '{"n":2,"type":"SomethingNew","x":1}',
        '{"n":3,"type":"AmountKeyed","amount":100.0}',
        '{"n":4,"type":"AmountKeyed","amount":1e2}',
        '{"n":5,"type":"AmountKeyed","amount":true}',
        '{"n":6,"type":"AmountKeyed","amount":100000000000000000000000}',
        '{"n":7,"type":"AmountKeyed","amount":100}',
    ]
    done = _talk([HELLO, *events])
    assert done.returncode == 0, done.stderr
    hello, *answers = (json.loads(line) for line in done.stdout.splitlines())
    assert hello == {"type": "hello", "protocol": 1, "name": "firmware-c", "version": "1.0"}
    assert [a["n"] for a in answers] == list(range(1, 8))
    texts = [[e["text"] for e in a["effects"]] for a in answers[1:]]
    invalid = ["INVALID AMOUNT"]
    assert texts == [[], invalid, invalid, invalid, invalid, ["CONFIRM AMOUNT"]]


def test_under_sanitizers_every_built_in_scenario_gives_the_reference_trace(
    tmp_path: Path,
) -> None:
    spec = f"exec:{_binary(sanitize=True)}"
    for path in SUITE:
        same_as_reference(load_scenario(path), spec, tmp_path)


def test_under_sanitizers_generated_scenarios_give_the_reference_trace(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    spec = f"exec:{_binary(sanitize=True)}"

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(scenarios())
    def same(sc: Scenario) -> None:
        same_as_reference(sc, spec, tmp_path_factory.mktemp("san"))

    same()


# ------------------------------------------------------------ conversations


def _conversation(seed: int, spec: str) -> None:
    """One random conversation fed to the in-process reference and to the C example
    (terminal/testing.py's Rig over each): the same effects after every event. It
    reaches what the simulated world rarely does: unknown response codes ("zz"),
    answers that echo a wrong field, a float amount, timers and power cuts at any
    point, answers to old requests."""
    rng = random.Random(seed)
    factory = ExecFactory(spec)
    try:
        ref, c = Rig(ReferenceFirmware), Rig(factory)
        assert c.boot_effects == ref.boot_effects
        key = ref.config.mac_key
        sent: dict[str, list[Message]] = {"0200": [], "0400": [], "0500": [], "0600": []}
        jobs: list[str] = []
        for step in range(80):
            roll = rng.random()
            events: list[Event] = []
            if roll < 0.2:
                amount: int | float = rng.choice([100, 2_500, 1_234_567, 999, 0, 100.0])
                events = [AmountKeyed(amount), ConfirmPressed(), CardPresented(PAN)]  # type: ignore[arg-type]
            elif roll < 0.55:
                mti = rng.choice(["0200", "0200", "0200", "0400", "0500", "0600"])
                if sent[mti]:
                    request = sent[mti][-1] if rng.random() < 0.7 else rng.choice(sent[mti][-4:])
                    rc = rng.choice(RCS[mti])
                    changes = {"amount": request.amount + 1} if rng.random() < 0.1 else {}
                    events = [MessageReceived(respond(request, key, rc, **changes))]
            elif roll < 0.75:
                events = [
                    TimerExpired(
                        rng.choice(["response", "in-progress", "reversal", "batch", "inquiry"])
                    )
                ]
            elif roll < 0.85 and jobs:
                events = [PrintFinished(rng.choice(jobs[-3:]), rng.choice(list(PrintStatus)))]
            elif roll < 0.91:
                events = [rng.choice([ReprintRequested(), CancelPressed(), CardPresented("")])]
            elif roll < 0.95:
                events = [BatchCloseRequested()]
            else:
                got, want = c.power_cut(), ref.power_cut()
                assert got == want, f"seed {seed} step {step}: power cut"
            for event in events:
                got, want = c.feed(event), ref.feed(event)
                assert got == want, f"seed {seed} step {step}: {event}"
                for effect in want:
                    if isinstance(effect, Send):
                        sent[effect.message.mti].append(effect.message)
                    elif isinstance(effect, Print):
                        jobs.append(effect.job_id)
        assert c.journal == ref.journal
    finally:
        factory.close()


RCS = {
    "0200": ["00", "00", "05", "09", "12", "30", "51", "63", "91", "94", "96", "zz"],
    "0400": ["00", "00", "12", "96"],
    "0500": ["00", "95", "96"],
    "0600": ["00", "05", "09", "25", "51", "CL", "RV", "zz"],
}


def test_random_conversations_get_the_reference_firmwares_effects() -> None:
    spec = f"exec:{_binary()}"
    for seed in range(25):
        _conversation(seed, spec)


def test_check_determinism_passes_the_c_example_and_writes_its_traces(tmp_path: Path) -> None:
    """`run --check-determinism` runs each scenario twice through the pipe; the trace
    directory need not exist yet (it is made, as without the option)."""
    out, err = io.StringIO(), io.StringIO()
    traces = tmp_path / "new" / "traces"
    args = ["run", "scenarios/incidents", "--check-determinism", "--trace-dir", str(traces)]
    with redirect_stdout(out), redirect_stderr(err):
        code = main([*args, "--firmware", f"exec:{_binary()}"])
    assert code == 0, out.getvalue()[-2000:] + err.getvalue()[-2000:]
    every = list(Path("scenarios/incidents").glob("*.toml"))
    assert len(list(traces.glob("*.jsonl"))) == len(every)
    # The wallet and partial-approval scenarios run too, and are skipped: the C
    # example takes cards only, and no partial approvals.
    skipped = len(every) - len(SUITE)
    assert skipped > 0 and f"{skipped} skipped" in out.getvalue()
