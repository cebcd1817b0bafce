"""Test helpers shipped with the package (they need pytest): the store conformance suite, which runs the
required-contract tests and the tests of each capability a backend declares."""

from .marks import capability
from .store_conformance import InjectedFault, StoreConformance, capability_report, precondition_like_provenance

__all__ = ["StoreConformance", "InjectedFault", "capability", "capability_report", "precondition_like_provenance"]
