"""`posharness conformance`: posharness's own host passes every case, in both codecs; a
deliberately broken host (approves everything, remembers nothing, checks no MAC) fails
exactly the cases that judge what it gets wrong."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import aiomqtt
import pytest

from acquirer import protocol as p
from acquirer.testing import fixed_test_mac_key
from harness import conformance
from harness.cli import main
from harness.mqtt import wire
from harness.mqtt.broker import PrivateBroker
from harness.mqtt.host_service import HostService

SAFETY_S = 60  # a hang becomes a failure after this long; nothing waits for it to pass
TID = "T0001"


@pytest.mark.asyncio
@pytest.mark.parametrize("codec", ["iso8583", "json"])
async def test_posharness_host_passes_every_case(
    broker: PrivateBroker, host_db: str, codec: wire.Codec
) -> None:
    async with asyncio.timeout(SAFETY_S), HostService(broker.address("acquirer"), host_db):
        results = await conformance.run_cases(
            broker.address(TID), TID, fixed_test_mac_key(TID), codec
        )
    assert [r.name for r in results] == [name for name, _, _ in conformance.CASES]
    assert [(r.name, r.detail) for r in results if not r.ok] == []


async def broken_host(address: wire.BrokerAddress, ready: asyncio.Event) -> None:
    """Approves every request it can decode with a new RRN, signed; checks nothing."""
    rrns = itertools.count(1)
    async with aiomqtt.Client(
        address.host, address.port, username=address.username, password=address.password
    ) as client:
        await client.subscribe("posh/+/req", qos=1)
        ready.set()
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            try:
                req, codec = wire.decode(message.payload)
            except p.ProtocolError:
                continue
            ans = p.Message(
                p.response_mti(req.mti), req.terminal_id, req.merchant_id, req.stan,
                req.pan, req.processing_code, req.amount, req.currency,
                f"{next(rrns):012d}", p.RC_APPROVED, "A00001", req.idem_key, False,
                req.orig_stan, req.orig_key, req.debit_count, req.debit_amount,
                req.credit_count, req.credit_amount, req.batch_no, (), req.sent_ms,
            )  # fmt: skip
            signed = p.sign(ans, fixed_test_mac_key(req.terminal_id))
            topic = wire.topic(req.terminal_id, "resp")
            await client.publish(topic, wire.encode(signed, codec), qos=1)


@pytest.mark.asyncio
async def test_a_broken_host_fails_the_right_cases(broker: PrivateBroker) -> None:
    ready = asyncio.Event()
    async with asyncio.timeout(SAFETY_S):
        task = asyncio.create_task(broken_host(broker.address("acquirer"), ready))
        await ready.wait()
        try:
            results = await conformance.run_cases(broker.address(TID), TID, fixed_test_mac_key(TID))
        finally:
            task.cancel()
    failed = {r.name for r in results if not r.ok}
    assert failed == {
        "resend",  # a new RRN: charged twice
        "resend-0201",
        "key-reuse",  # approved, not 94
        "duplicates",
        "reversal-mismatch",  # approved, not 12
        "reversal-unknown",  # approved, not 25
        "batch",  # approved, not 95
        "forged",  # a signed answer to a frame it could not have authenticated
        "stale",  # approved, not 63
        "stan-zero",  # approved, not 30
    }
    by_name = {r.name: r for r in results}
    assert "RRN" in by_name["resend"].detail
    assert any(line.startswith("-> ") for line in by_name["resend"].exchange)


def test_conformance_usage_errors_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.json"
    assert main(["conformance", "--broker", "mqtt://127.0.0.1:1", "--keys", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.json" in err
    code = main(["conformance", "--broker", "mqtt://127.0.0.1:1", "--keys", "k", "--case", "nope"])
    assert code == 2 and "unknown case 'nope'" in capsys.readouterr().err
