"""docs/vectors/*.json: the published test vectors hold for the project's own codecs."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from acquirer import iso8583 as codec
from acquirer import protocol as p
from acquirer import vectors

VALID = json.loads((vectors.VECTORS_DIR / "valid.json").read_text())
INVALID = json.loads((vectors.VECTORS_DIR / "invalid.json").read_text())
KEY = bytes.fromhex(VALID["mac_key_hex"])


def test_the_files_are_what_the_generator_writes_today() -> None:
    """A wire change that alters any byte must regenerate (and so review) the vectors."""
    for name, text in vectors.documents().items():
        assert (vectors.VECTORS_DIR / name).read_text() == text, name
    assert vectors.main(["--check"]) == 0


def _entries() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{case['name']}/{side}", case[side])
        for case in VALID["cases"]
        for side in ("request", "answer")
    ]


@pytest.mark.parametrize(("label", "entry"), _entries(), ids=[e[0] for e in _entries()])
def test_each_valid_message_round_trips_and_its_mac_is_hmac_sha256_of_the_input(
    label: str, entry: dict[str, Any]
) -> None:
    msg = p.Message.from_dict(entry["message"])
    assert codec.decode(entry["iso8583"].encode()) == msg
    assert codec.from_json(entry["json"].encode()) == msg
    assert codec.encode(msg).decode() == entry["iso8583"]
    assert codec.to_json(msg).decode() == entry["json"]
    assert p.mac_payload(msg).decode() == entry["mac_input"]
    # Independently of the project's MAC code: HMAC-SHA256 over the published input.
    digest = hmac.new(KEY, entry["mac_input"].encode(), hashlib.sha256).hexdigest()
    assert entry["mac"] == digest[:16] and entry["mac_ok"] is True
    if "iso8583_repeat_mti" in entry:
        assert codec.decode(entry["iso8583_repeat_mti"].encode()) == msg


def test_the_vectors_cover_a_resend_with_the_same_answer_and_a_refused_batch() -> None:
    by_name = {c["name"]: c for c in VALID["cases"]}
    first = by_name["purchase"]["answer"]["message"]
    again = by_name["purchase-resend"]["answer"]["message"]
    assert (first["rc"], first["rrn"]) == (again["rc"], again["rrn"]) == ("00", "000000000001")
    assert by_name["batch-mismatch"]["answer"]["message"]["rc"] == p.RC_RECONCILE_ERROR
    assert by_name["reversal-of-unknown"]["answer"]["message"]["rc"] == p.RC_UNABLE_TO_LOCATE
    assert "iso8583_repeat_mti" in by_name["purchase-resend"]["request"]


@pytest.mark.parametrize("case", INVALID["cases"], ids=[c["name"] for c in INVALID["cases"]])
def test_each_invalid_frame_is_refused_for_the_published_reason(case: dict[str, Any]) -> None:
    frame = case["frame"].encode()
    decode = codec.decode if case["codec"] == "iso8583" else codec.from_json
    if case["refused_by"] == "decode":
        with pytest.raises(p.ProtocolError) as exc:
            decode(frame)
        assert str(exc.value) == case["reason"]
        return
    msg = decode(frame)
    if case["refused_by"] == "validate":
        assert p.validate_request(msg) == case["reason"]
    else:
        assert case["refused_by"] == "mac"
        assert p.validate_request(msg) is None and not p.verify(msg, KEY)
