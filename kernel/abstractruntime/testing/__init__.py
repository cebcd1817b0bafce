"""Test helpers shipped with the package (they need pytest): the store conformance suite."""

from .store_conformance import InjectedFault, StoreConformance

__all__ = ["StoreConformance", "InjectedFault"]
