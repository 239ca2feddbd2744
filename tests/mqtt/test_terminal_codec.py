"""The MQTT terminal driver hands the firmware only frames in the codec it speaks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from acquirer.protocol import MTI_PURCHASE_RESP, Message, sign
from acquirer.testing import fixed_test_mac_key
from harness.mqtt import wire
from harness.mqtt.journal import Journal
from harness.mqtt.terminal_driver import TerminalDriver, terminal_config
from terminal.firmware import Event


class Recorder:
    """A firmware that only records what it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> list[object]:
        self.events.append(event)
        return []


def test_a_frame_in_the_other_codec_is_dropped_unread(tmp_path: Path) -> None:
    """A signed answer in JSON reaches an ISO 8583 terminal's firmware not at all (a
    second parser is a second attack surface); the same answer in ISO 8583 does."""
    config = terminal_config("T0001", fixed_test_mac_key("T0001"))
    answer = sign(
        Message(MTI_PURCHASE_RESP, "T0001", config.merchant_id, 1, rc="00"), config.mac_key
    )

    async def run() -> tuple[int, int]:
        fw = Recorder()
        journal = Journal(str(tmp_path / "t.db"))
        driver = TerminalDriver(fw, config, journal, lambda _: True, codec="iso8583")
        driver.receive(wire.encode(answer, "json"))
        dropped, seen = driver.dropped_frames, len(fw.events)
        driver.receive(wire.encode(answer, "iso8583"))
        assert len(fw.events) == 1
        journal.close()
        return dropped, seen

    assert asyncio.run(run()) == (1, 0)
