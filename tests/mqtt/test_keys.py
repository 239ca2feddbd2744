"""Terminal secrets: key files (random keys, mode 0600), and the hardened broker config."""

from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path

import pytest

from harness.cli import main
from harness.mqtt import broker as broker_mod
from harness.mqtt.cli import _serve_keys, fleet_worker_users
from harness.mqtt.hostdb import load_keys, provision
from harness.mqtt.keys import (
    KeyFileError,
    TerminalSecret,
    generate,
    load_key_file,
    mac_keys,
    write_key_file,
)


def test_generated_keys_are_random_and_written_0600(tmp_path: Path) -> None:
    """Two provisionings of the same ids never share a key; the file is 0600 and loads back."""
    a, b = generate(["T0001", "T0002"]), generate(["T0001", "T0002"])
    assert a["T0001"].mac_key != b["T0001"].mac_key != a["T0002"].mac_key
    assert len(a["T0001"].mac_key) == 32 and a["T0001"].broker_password
    path = tmp_path / "keys.json"
    write_key_file(path, a)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_file(path) == a
    assert "mac_key" not in repr(a) and a["T0001"].mac_key.hex() not in repr(a)


def _write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("text", "mode", "why"),
    [
        ('{"T0001": "' + "ab" * 32 + '"}', 0o644, "chmod 600"),
        ("not json", 0o600, "not JSON"),
        ("[1]", 0o600, "expected a JSON object"),
        ('{"T0001": "xyz"}', 0o600, "not hex"),
        ('{"T0001": "abcd"}', 0o600, "16-64 bytes"),
        ('{"T 1": "' + "ab" * 32 + '"}', 0o600, "not a terminal id"),
        ('{"T0001": {"mac_key": "' + "ab" * 32 + '", "pin": 1}}', 0o600, "unknown field"),
        ('{"T0001": {"mac_key": "' + "ab" * 32 + '", "broker_password": 7}}', 0o600, "printable"),
        ("[" * 100_000, 0o600, "not JSON"),
    ],
)
def test_a_bad_key_file_is_one_line_naming_it(
    tmp_path: Path, text: str, mode: int, why: str
) -> None:
    path = _write(tmp_path, text, mode)
    with pytest.raises(KeyFileError) as exc:
        load_key_file(path)
    assert why in str(exc.value) and str(path) in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_key_file_that_is_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path, 0o600)
    with pytest.raises(KeyFileError, match="FIFO"):
        load_key_file(path)


def test_a_hand_written_hex_key_is_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps({"T0009": "0f" * 16}))
    assert load_key_file(path) == {"T0009": TerminalSecret(bytes([15]) * 16)}


def test_serve_creates_the_key_file_once_and_provisions_from_it(tmp_path: Path) -> None:
    """`acquirer serve` without --keys writes DB.keys.json (random keys) and reuses it."""
    db = str(tmp_path / "host.db")
    args = argparse.Namespace(db=db, keys=None, provision=3)
    found = _serve_keys(args)
    assert found is not None
    path, first = found
    assert path == f"{db}.keys.json" and sorted(first) == ["T0001", "T0002", "T0003"]
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    again = _serve_keys(args)
    assert again is not None and again[1] == first
    provision(db, mac_keys(first))
    assert load_keys(db) == mac_keys(first)
    assert stat.S_IMODE(Path(db).stat().st_mode) == 0o600  # the database holds the keys


def test_provisioning_a_rotated_key_replaces_the_old_one(tmp_path: Path) -> None:
    db = str(tmp_path / "host.db")
    provision(db, {"T0001": b"k" * 32})
    provision(db, {"T0001": b"n" * 32})
    assert load_keys(db) == {"T0001": b"n" * 32}


def test_serve_with_provision_0_and_no_key_file_uses_the_database(tmp_path: Path) -> None:
    args = argparse.Namespace(db=str(tmp_path / "host.db"), keys=None, provision=0)
    assert _serve_keys(args) is None
    assert not (tmp_path / "host.db.keys.json").exists()


def test_terminal_run_against_a_broker_needs_a_key_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key is ever derived from the terminal id: without --keys it is exit 2, one line."""
    monkeypatch.delenv("POSHARNESS_KEYS", raising=False)
    code = main(["terminal", "run", "--broker", "mqtt://127.0.0.1:1", "--id", "T0001"])
    err = capsys.readouterr().err
    assert code == 2 and "--keys FILE" in err and len(err.strip().splitlines()) == 1


def test_terminal_run_names_a_key_file_without_its_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    write_key_file(path, generate(["T0002"]))
    argv = ["terminal", "run", "--broker", "mqtt://127.0.0.1:1", "--keys", str(path)]
    assert main(argv) == 2
    assert f"{path}: no key for terminal T0001" in capsys.readouterr().err


def test_generated_broker_config_is_hardened() -> None:
    """One client per login (client id = user name), a payload limit, a packet limit,
    and per-client queue caps in messages and bytes; fleet workers have their own users."""
    if broker_mod.find_mosquitto() is None:
        pytest.skip(broker_mod.SETUP_HINT)
    b = broker_mod.PrivateBroker(
        terminal_users=["T0001"],
        passwords={"T0001": "given-password"},
        extra_service_users=fleet_worker_users(2),
    )
    try:
        conf = (b.dir / "mosquitto.conf").read_text().splitlines()
        acl = (b.dir / "acl").read_text()
        passwd = b.dir / "passwd"
        assert "use_username_as_clientid true" in conf
        assert f"message_size_limit {broker_mod.FRAME_MAX_BYTES}" in conf
        assert f"max_packet_size {broker_mod.MAX_PACKET_BYTES}" in conf
        assert f"max_queued_bytes {broker_mod.MAX_QUEUED_BYTES}" in conf
        assert any(line.startswith("max_queued_messages ") for line in conf)
        assert "user fleet-1\ntopic readwrite posh/#" in acl and "user fleet-2" in acl
        assert b.passwords["T0001"] == "given-password"
        assert "given-password" not in passwd.read_text()  # hashed
        assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    finally:
        b.close()


def test_terminal_run_refuses_a_script_line_with_an_unknown_chip_word(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After AMOUNT PAN only `decline` or `removed` (a chip card refusing the approval)."""
    script = tmp_path / "script.txt"
    script.write_text("2500 4000000000000002 maybe\n")
    argv = ["terminal", "run", "--broker", "mqtt://127.0.0.1:1", "--script", str(script)]
    assert main([*argv, "--chip"]) == 2
    err = capsys.readouterr().err
    assert "line 1: after AMOUNT PAN only decline or removed" in err
    assert len(err.strip().splitlines()) == 1


def test_terminal_run_refuses_a_malformed_void_or_refund_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """VOID N, REFUND N [AMOUNT], COMPLETE N [AMOUNT] or TIP N TIP, N a payment number from
    1: anything else is one line."""
    script = tmp_path / "script.txt"
    for bad in ("VOID\n", "VOID 0\n", "REFUND 1 2 3\n", "VOID one\n", "TIP 1\n", "COMPLETE 0\n"):
        script.write_text(bad)
        argv = ["terminal", "run", "--broker", "mqtt://127.0.0.1:1", "--script", str(script)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "line 1: expected VOID N, REFUND N [AMOUNT], COMPLETE N [AMOUNT] or TIP N TIP" in err
        assert len(err.strip().splitlines()) == 1
