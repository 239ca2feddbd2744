"""Two host instances on one PostgreSQL database racing on one request.

Each race is forced into its hardest interleaving: instance a holds its
transaction open (a group, as the MQTT host's group commit would), instance b
is started on a thread and seen blocked on a's row lock, then a commits. Plus a
threaded storm where both instances get the same requests at the same moment.
Whatever the interleaving: exactly one charge, the loser gets the stored answer
or RC 09, the ledger balances.
"""

from __future__ import annotations

import threading

import pytest

from acquirer import protocol as p
from acquirer.host import Message, Ticket
from acquirer.races import PAN, TERMINAL, pair

pytestmark = pytest.mark.usefixtures("pg_available")


def purchase(stan: int, amount: int = 1_000, key: str = "") -> Message:
    return TERMINAL.purchase(stan, amount, PAN, key or f"K{stan}")


def sale_and_reversal(stan: int) -> tuple[Message, Message]:
    """A sale with key K<stan> and its reversal (STAN + 1)."""
    return purchase(stan), TERMINAL.reversal(stan + 1, f"K{stan}", amount=1_000, pan=PAN)


def test_same_request_to_two_instances_at_once_charges_once(pg_url: str) -> None:
    with pair(pg_url) as race:
        msg = purchase(1)
        race.a.begin_group()
        ticket, _ = race.a.begin(msg, 0)
        assert isinstance(ticket, Ticket)
        # b's claim waits for a's uncommitted one
        loser, action = race.b_waits_for_a(lambda: race.b.begin(msg, 0))
        assert isinstance(loser, Message) and loser.rc == p.RC_IN_PROGRESS
        assert action is not None and action.action == "in-progress"
        won, _ = race.a.finish(ticket, 20)
        assert won.rc == p.RC_APPROVED
        # The loser's resend (to either instance) gets the stored answer.
        replay = race.b.handle(msg, 500)
        assert (replay.rc, replay.rrn, replay.auth_code) == (won.rc, won.rrn, won.auth_code)
        assert race.charges() == 1
        assert race.a.balance(PAN) == race.a.initial_balance(PAN) - 1_000
        assert race.a.ledger_sum() == 0


def test_repeat_racing_its_original_gets_the_stored_answer(pg_url: str) -> None:
    with pair(pg_url) as race:
        msg = purchase(2)
        ticket, _ = race.a.begin(msg, 0)
        assert isinstance(ticket, Ticket)
        race.a.begin_group()
        won, _ = race.a.finish(ticket, 20)  # charged, not committed yet
        repeat = TERMINAL.signed(Message(**{**_fields(msg), "repeat": True}))
        # b reads the record FOR UPDATE: waits for a's commit
        answer = race.b_waits_for_a(lambda: race.b.handle(repeat, 30))
        assert (answer.rc, answer.rrn) == (p.RC_APPROVED, won.rrn)
        assert race.charges() == 1 and race.a.ledger_sum() == 0


def test_reversal_racing_the_late_original_undoes_exactly_one_charge(pg_url: str) -> None:
    with pair(pg_url) as race:
        msg, reversal = sale_and_reversal(3)
        ticket, _ = race.a.begin(msg, 0)
        assert isinstance(ticket, Ticket)
        # While the original is only claimed, the reversal is told to come back.
        early = race.b.handle(reversal, 10)
        assert early.rc == p.RC_IN_PROGRESS
        race.a.begin_group()
        won, _ = race.a.finish(ticket, 20)
        assert won.rc == p.RC_APPROVED
        # b reads the sale's record FOR UPDATE: waits for a's commit
        answer = race.b_waits_for_a(lambda: race.b.handle(reversal, 30))
        assert answer.rc == p.RC_APPROVED
        # The same reversal again, on the other instance: nothing more moves.
        assert race.a.handle(reversal, 40).rc == p.RC_APPROVED
        assert race.charges() == 0
        assert race.a.balance(PAN) == race.a.initial_balance(PAN)
        assert race.a.ledger_sum() == 0


def test_reversal_first_at_the_other_instance_blocks_the_charge(pg_url: str) -> None:
    with pair(pg_url) as race:
        msg, reversal = sale_and_reversal(5)
        race.a.begin_group()
        # The reversal overtook its sale: a tombstone, not committed yet.
        assert race.a.handle(reversal, 0).rc == p.RC_UNABLE_TO_LOCATE
        # b's claim waits on the tombstone's insert
        answer = race.b_waits_for_a(lambda: race.b.handle(msg, 10))
        assert answer.rc == p.RC_DO_NOT_HONOUR
        assert race.charges() == 0 and race.a.ledger_sum() == 0


def test_reversal_racing_its_originals_claim_is_retried_and_told_to_come_back(
    pg_url: str,
) -> None:
    with pair(pg_url) as race:
        msg, reversal = sale_and_reversal(7)
        race.a.begin_group()
        ticket, _ = race.a.begin(msg, 0)  # claimed, not committed: b cannot see it
        assert isinstance(ticket, Ticket)
        # b's tombstone insert waits on a's claim
        answer = race.b_waits_for_a(lambda: race.b.handle(reversal, 10))
        # The insert fails (unique); b runs the reversal again and finds the claim.
        assert answer.rc == p.RC_IN_PROGRESS
        assert race.b.retries == 1
        assert race.a.finish(ticket, 20)[0].rc == p.RC_APPROVED
        assert race.b.handle(reversal, 30).rc == p.RC_APPROVED
        assert race.charges() == 0 and race.a.ledger_sum() == 0


def test_a_claim_cleared_as_dead_and_taken_over_is_never_charged_twice(pg_url: str) -> None:
    """Instance a stalls after claiming; b clears the claim as a dead instance's and
    claims the resend. a's late finish must not charge: it answers 09, b charges."""
    with pair(pg_url) as race:
        msg = purchase(9)
        stalled, _ = race.a.begin(msg, 0)
        assert isinstance(stalled, Ticket)
        assert race.b.clear_stale_claims(before_ms=1) == 1
        taken, _ = race.b.begin(msg, 5)
        assert isinstance(taken, Ticket)
        late, action = race.a.finish(stalled, 10)
        assert late.rc == p.RC_IN_PROGRESS and action.action == "in-progress"
        won, _ = race.b.finish(taken, 20)
        assert won.rc == p.RC_APPROVED
        assert race.a.handle(msg, 30).rrn == won.rrn
        assert race.charges() == 1 and race.a.ledger_sum() == 0


def test_both_instances_handling_the_same_requests_at_once_never_double_charge(
    pg_url: str,
) -> None:
    rounds = 40
    with pair(pg_url) as race:
        start = threading.Barrier(2)
        answers: dict[str, list[Message]] = {"a": [], "b": []}

        def serve(name: str) -> None:
            host = race.a if name == "a" else race.b
            for n in range(rounds):
                start.wait()
                answers[name].append(host.handle(purchase(100 + n), n * 10))
                start.wait()
                # The reversal of every third sale, to both instances at once.
                if n % 3 == 0:
                    rev = TERMINAL.reversal(1_000 + n, f"K{100 + n}", amount=1_000, pan=PAN)
                    host.handle(rev, n * 10 + 5)

        other = race.in_b(lambda: serve("b"))
        serve("a")
        other.result()
        for a, b in zip(answers["a"], answers["b"], strict=True):
            rcs = sorted((a.rc, b.rc))
            assert rcs in (["00", "00"], ["00", "09"]), rcs
            if rcs == ["00", "00"]:
                assert a.rrn == b.rrn  # one charge, its answer replayed
        reversed_ = sum(1 for n in range(rounds) if n % 3 == 0)
        assert race.charges() == rounds - reversed_
        assert race.a.balance(PAN) == race.a.initial_balance(PAN) - 1_000 * (rounds - reversed_)
        assert race.a.ledger_sum() == 0


def _fields(msg: Message) -> dict[str, object]:
    return {f: getattr(msg, f) for f in msg.__dataclass_fields__ if f != "mac"}
