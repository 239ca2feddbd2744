"""Length-prefixed TCP framing: any split of the stream gives back the same frames."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.tcp.framing import (
    HEADERS,
    MAX_FRAME_BYTES,
    FrameError,
    FrameReader,
    answer_tpdu,
    encode_frame,
)

frames = st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8)


@given(
    header=st.sampled_from(HEADERS),
    messages=frames,
    tpdu=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=10),
)
def test_frames_survive_any_split_of_the_stream(
    header: str, messages: list[bytes], tpdu: bool, cuts: list[int]
) -> None:
    prefix = b"\x60\x00\x01\x00\x02" if tpdu else b""
    stream = b"".join(encode_frame(m, header, prefix) for m in messages)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    reader = FrameReader(header, tpdu=tpdu)
    out = []
    for a, b in itertools.pairwise(points):
        out += reader.feed(stream[a:b])
    assert out == [(prefix, m) for m in messages]
    assert reader.pending == 0


@pytest.mark.parametrize("header", HEADERS)
def test_an_oversized_length_breaks_the_stream(header: str) -> None:
    size = int(header[0])
    raw = (
        (MAX_FRAME_BYTES + 1).to_bytes(size, "big")
        if header.endswith("b")
        else str(MAX_FRAME_BYTES + 1).zfill(size).encode()
    )
    if header == "2a":  # 2 ASCII digits cannot say more than 99: nothing to refuse
        return
    with pytest.raises(FrameError, match="over the"):
        FrameReader(header).feed(raw)


def test_a_non_digit_ascii_length_and_a_zero_length_break_the_stream() -> None:
    with pytest.raises(FrameError, match="not 4 ASCII digits"):
        FrameReader("4a").feed(b"00x1abc")
    with pytest.raises(FrameError, match="0 bytes"):
        FrameReader("2b").feed(b"\x00\x00")
    with pytest.raises(FrameError, match="does not fit"):
        encode_frame(b"x" * 100, "2a")


def test_an_answer_tpdu_swaps_destination_and_source() -> None:
    assert answer_tpdu(b"\x60\x00\x01\x00\x02") == b"\x60\x00\x02\x00\x01"
    assert answer_tpdu(b"") == b""
