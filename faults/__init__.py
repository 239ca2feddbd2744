"""Faults as data: a catalogue of fault kinds, registered by name.

`REGISTRY` maps each kind's name to its frozen dataclass; `build_fault(kind, table)`
turns scenario data into a checked fault.
"""

from . import attacker, clock, devices, host, network, power  # noqa: F401  (registers the kinds)
from .base import (
    PLAN_FAULTS_MAX,
    REGISTRY,
    Fault,
    FaultSpecError,
    FaultState,
    build_fault,
    swarm_kinds,
)

__all__ = [
    "PLAN_FAULTS_MAX",
    "REGISTRY",
    "Fault",
    "FaultSpecError",
    "FaultState",
    "build_fault",
    "swarm_kinds",
]
