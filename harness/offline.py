"""The world's side of offline approvals (store-and-forward).

A terminal configured with an offline floor limit approves a sale offline when the
host does not answer: the firmware names the sale by its idempotency key on the
display (`Display.key`), not by an RRN, since the host has not seen it yet. Such a
display belongs to the customer whose request carried that key, even when it comes
later (the expiry or late decline of an upload, or the approval shown again at boot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.world import World
    from harness.world_model import IntentState


def offline_display_intent(w: World, key: str, active: IntentState | None) -> IntentState | None:
    """The intent a display naming sale `key` belongs to (the active one if unknown)."""
    n = w.key_intent.get(key)
    if n is not None and n in w.intents:
        return w.intents[n]
    return active
