"""Real identifiers -> simulator identifiers, stable across imports.

Field logs carry terminal ids longer than 8 characters, merchant ids with dashes and
masked PANs (400000******0002). The simulator's scenario format accepts 1-8 letters
or digits for a terminal, and 12-19 digits for a card, so import maps each real value
to a synthetic one derived from a hash of it (the same log always gives the same
scenario) and says so.
"""

import hashlib

from acquirer.catalogue import CATALOGUE_CARDS

TID_LEN_MAX = 8
PAN_LEN = 16
_CATALOGUE_PANS = {c.pan for c in CATALOGUE_CARDS}


def _digits(text: str, n: int) -> str:
    h = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return str(int(h, 16))[-n:].rjust(n, "0")


def sim_tid(tid: str) -> str:
    """A terminal id the simulator accepts: the real one when it fits."""
    if 1 <= len(tid) <= TID_LEN_MAX and tid.isalnum() and tid.isascii():
        return tid
    return "T" + _digits(tid, TID_LEN_MAX - 1)


def sim_mid(mid: str) -> str:
    """A merchant id: letters and digits only (dashes and spaces dropped), at most 15."""
    kept = "".join(c for c in mid if c.isascii() and c.isalnum())[:15]
    return kept or "M" + _digits(mid, 12)


def is_pan(pan: str) -> bool:
    return 12 <= len(pan) <= 19 and pan.isdigit()


def sim_pan(pan: str) -> str:
    """A test PAN: the real digits when the PAN is whole, else a synthetic 16-digit PAN
    keeping the visible first six and last four digits, the middle from a hash of
    the masked form (never a catalogue card, which has rules of its own)."""
    if is_pan(pan):
        return pan
    visible = "".join(c for c in pan if c.isdigit())
    first = visible[:6] if len(visible) >= 10 else "999999"
    last = visible[-4:] if len(visible) >= 4 else _digits(pan + "/last", 4)
    for salt in range(100):
        out = first + _digits(f"{pan}/{salt}", PAN_LEN - 10) + last
        if out not in _CATALOGUE_PANS:
            return out
    return "9" * (PAN_LEN - 4) + last  # unreachable in practice: 100 hash collisions
