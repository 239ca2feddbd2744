"""`posharness fleet --hosts 2 --db postgresql://...`: two host processes sharing the
requests (MQTT shared subscription), one database, every invariant kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acquirer import pgtesting
from harness.cli import main
from harness.mqtt.broker import SETUP_HINT, find_mosquitto

# Every sale delivered twice at once: the broker's shared subscription hands the two
# copies to the two instances in turn, so they race on the same request.
DUPLICATE_EVERY_SALE = """
[[faults]]
duplicate = { direction = "to_host", mti = "0200", nth = 0, gap_ms = 0 }
"""


@pytest.mark.skipif(find_mosquitto() is None, reason=SETUP_HINT)
@pytest.mark.parametrize("duplicated", [False, True], ids=["clean", "every-sale-twice"])
def test_fleet_served_by_two_host_instances_keeps_every_invariant(
    pg_available: None, duplicated: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["fleet", "--terminals", "4", "--rate", "40", "--duration", "1", "--json"]
    if duplicated:
        plan = tmp_path / "plan.toml"
        plan.write_text(DUPLICATE_EVERY_SALE)
        args += ["--faults", str(plan)]
    code = main([*args, "--hosts", "2", "--db", pgtesting.base_url()])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["invariants"] == {
        "no-duplicate-charge": [],
        "no-charge-on-failure": [],
        "approved-is-charged": [],
        "ledger-balances": [],
        "eventually-settles": [],
    }
    assert report["completed"] == report["offered"] > 0
    assert code == 0


@pytest.mark.skipif(find_mosquitto() is None, reason=SETUP_HINT)
def test_kill_9_of_one_instance_under_load_loses_and_doubles_nothing(
    pg_available: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """One of two instances is killed a second into the load: the other serves on,
    a request the dead one had claimed is answered 09 until its claim's lease ends,
    and every purchase still completes with every invariant kept."""
    args = ["fleet", "--terminals", "6", "--rate", "60", "--duration", "2", "--json"]
    args += ["--hosts", "2", "--kill-host-after", "1", "--db", pgtesting.base_url()]
    code = main(args)
    out = capsys.readouterr()
    report = json.loads(out.out.strip().splitlines()[-1])
    assert "fleet: killed host process" in out.err
    assert report["invariants_ok"] is True, report["invariants"]
    assert report["completed"] == report["offered"] > 0
    assert code == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--hosts", "2"], "--hosts > 1 needs --db postgresql://"),
        (["--kill-host-after", "1"], "--kill-host-after needs --hosts 2"),
        (["--db", "host.db"], "fleet takes a postgresql:// URL"),
        (["--hosts", "0"], "--hosts must be between 1 and 16"),
    ],
)
def test_fleet_refuses_hosts_it_cannot_share(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fleet", *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--db", "x.db", "--share", "hosts"], "--share needs --db postgresql://"),
        (["--db", "postgresql://h/db"], "needs --keys FILE"),
        (["--db", "postgresql://h/db", "--keys", "k", "--share", "a/b"], "a group name"),
    ],
)
def test_serve_refuses_a_share_it_cannot_keep(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["acquirer", "serve", *extra]) == 2
    assert message in capsys.readouterr().err
