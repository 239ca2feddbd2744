"""End to end: the built-in incident suite against the reference firmware and the zoo.

Every zoo firmware must be caught on the incident suite by the invariant that
models its real-world failure, and the reference firmware must pass everything.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from harness.runner import RunResult, run_scenario
from scenarios.loader import find_scenarios, load_scenario
from scenarios.model import Scenario
from terminal.zoo import ZOO

INCIDENTS = Path(__file__).resolve().parents[2] / "scenarios" / "incidents"

# Which invariant must catch each flawed firmware (the failure it models).
CAUGHT_BY = {
    "naive-retry": "no-duplicate-charge",
    "no-reversal": "no-charge-on-failure",
    "float-amount": "amount-integrity",
    "no-amount-check": "amount-integrity",
    "print-before-journal": "receipt-for-every-charge",
    "receipt-from-request": "no-receipt-without-record",
    "trusts-unsigned": "no-receipt-without-record",
    "no-debounce": "no-duplicate-charge",
    "volatile-reversal": "no-charge-on-failure",
    "decline-on-in-progress": "no-charge-on-failure",
    "late-approval-flips": "no-receipt-without-record",
    "key-per-boot": "no-duplicate-charge",
    "batch-counts-reversed": "batch-reconciles",
    "no-echo-check": "no-receipt-without-record",
    # Its replacement device's sale shows APPROVED naming the first sale's RRN (a
    # stored answer to a reused key): no charge of its own is behind it.
    "tid-counter-keys": "approved-means-charged",
    # Wallet payments (scenarios/incidents/wallet-*.toml).
    "wallet-pending-failed": "no-charge-on-failure",
    "wallet-no-cancel": "no-charge-on-failure",
    "wallet-cancel-once": "no-charge-on-failure",
    # An APPROVED receipt for an order its own cancel refunded.
    "wallet-cancels-success": "approved-means-charged",
    "wallet-new-order": "no-duplicate-charge",
    "wallet-trusts-screen": "approved-means-charged",
    # Partial approvals (scenarios/incidents/partial-*.toml).
    "partial-as-full": "amount-integrity",
    "partial-as-decline": "no-charge-on-failure",
    # Chip decline after online approval (scenarios/incidents/chip-*.toml).
    "chip-decline-no-reversal": "no-charge-on-failure",
    "chip-receipt-before-card": "no-receipt-without-record",
    "chip-decline-reversal-not-journaled": "no-charge-on-failure",
    # Voids and refunds at the terminal (scenarios/incidents/refund-*.toml, void-*.toml).
    "refund-new-key-on-retry": "no-over-credit",
    # A sale shown VOIDED that the host never reversed (it was settled).
    "void-after-batch-close": "approved-means-charged",
    "refund-and-void": "no-over-credit",
    "refund-unknown-left": "no-charge-on-failure",
    "refund-receipt-before-answer": "no-receipt-without-record",
    "refund-not-resumed-at-boot": "no-charge-on-failure",
    # Offline approval, store-and-forward (scenarios/incidents/offline-*.toml).
    "offline-new-key-per-upload": "no-duplicate-charge",
    "offline-volatile-queue": "offline-uploaded",
    "offline-no-floor-limit": "offline-uploaded",
    "offline-no-expiry": "offline-uploaded",
    "offline-batch-before-upload": "batch-reconciles",
    "offline-late-decline-ignored": "batch-reconciles",
    "offline-expiry-no-reversal": "no-charge-on-failure",
    "offline-hold-as-sale": "amount-integrity",
    # Pre-authorisation, completion and tip adjust (scenarios/incidents/preauth-*.toml,
    # tip-*.toml).
    "completion-new-key-on-retry": "no-charge-on-failure",
    "completion-before-answer": "approved-means-charged",
    "tip-added-twice": "amount-integrity",
    "tip-after-batch-close": "approved-means-charged",
}


@cache
def suite() -> tuple[Scenario, ...]:
    return tuple(load_scenario(p) for p in find_scenarios([INCIDENTS]))


@cache
def results(firmware: str) -> tuple[RunResult, ...]:
    return tuple(run_scenario(sc, firmware) for sc in suite())


@pytest.mark.parametrize("name", [sc.name for sc in suite()])
def test_reference_firmware_passes_every_incident(name: str) -> None:
    (r,) = [r for r in results("reference") if r.scenario.name == name]
    details = [v.message for vs in r.violations.values() for v in vs]
    assert r.passed, f"{name}: {r.problems} {details}"
    assert r.purchases >= 1


def test_every_zoo_firmware_has_an_expected_catcher() -> None:
    assert set(ZOO) <= set(CAUGHT_BY), sorted(set(ZOO) - set(CAUGHT_BY))
    assert len(ZOO) >= 10


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_firmware_is_caught_by_its_invariant(name: str) -> None:
    rs = results(f"zoo:{name}")
    assert any(not r.passed for r in rs), f"zoo:{name} passed the whole incident suite"
    catcher = CAUGHT_BY[name]
    caught = [r for r in rs if r.violations[catcher]]
    assert caught, f"zoo:{name} was not caught by {catcher}; violated: " + str(
        sorted({v for r in rs for v in r.violated()})
    )
    v = caught[0].violations[catcher][0]
    assert v.seqs, "a violation must cite the trace lines that show it"
    assert v.message.endswith(".")


RECORDED = INCIDENTS.parent / "recorded"


def test_every_fault_of_every_builtin_scenario_applies_with_its_own_firmware() -> None:
    """No built-in fault is a silent no-op (none needs `optional = true`)."""
    for path in find_scenarios([INCIDENTS, RECORDED]):
        sc = load_scenario(path)
        r = run_scenario(sc)
        unapplied = [p for p in r.problems if "never applied" in p]
        assert not unapplied, f"{path}: {unapplied}"
        assert not any(f.optional for f in sc.faults), path


@pytest.mark.parametrize("path", sorted(find_scenarios([RECORDED])), ids=lambda p: p.parent.name)
def test_recorded_incident_is_fixed_by_the_reference_firmware(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.expect.violated and sc.firmware != "reference"
    r = run_scenario(sc, "reference")
    assert (r.judged, r.verdict) == ("fixed", "FIXED"), r.problems
    # The same file with its own firmware still shows the incident.
    own = run_scenario(sc, sc.firmware)
    assert own.verdict == "PASS" and set(sc.expect.violated) <= set(own.violated())


# An outside tester's flawed firmwares that passed the whole built-in suite, and the
# incident scenario each now fails (written from the tester's own): firmware, scenario,
# the invariants it must break.
OUTSIDERS = [
    # A status inquiry's "not found" taken for "nothing charged": DECLINED with no
    # reversal, and the 0200 still in the network charges.
    (
        "InquiryNotFoundIsDecline",
        "card-inquiry-not-found-late-copy",
        {"no-charge-on-failure", "batch-reconciles"},
    ),
    # A late "paid" after the cancel went: APPROVED and a receipt for money given back.
    (
        "LateWalletPaidPrints",
        "wallet-late-paid-inquiry-after-cancel",
        {"no-receipt-without-record", "approved-means-charged", "batch-reconciles"},
    ),
    # A second scan while the customer confirms starts a second order: paid twice.
    (
        "RescanRestartsWalletOrder",
        "wallet-rescan-while-confirming",
        {"no-duplicate-charge", "receipt-for-every-charge", "batch-reconciles"},
    ),
]


@pytest.mark.parametrize(("firmware", "scenario", "broken"), OUTSIDERS)
def test_an_outsiders_flaw_the_suite_missed_is_caught_by_its_scenario(
    firmware: str, scenario: str, broken: set[str]
) -> None:
    sc = load_scenario(INCIDENTS / f"{scenario}.toml")
    assert run_scenario(sc, "reference").passed
    bad = run_scenario(sc, f"tests.harness.invariant_firmwares:{firmware}")
    assert set(bad.violated()) == broken
