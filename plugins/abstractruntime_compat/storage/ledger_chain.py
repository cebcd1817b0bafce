"""Reference path ``abstractruntime.storage.ledger_chain`` (the hash chain lives in the ``provenance`` plugin)."""

from abstractruntime_provenance.chain import HashChainedLedgerStore, verify_ledger_chain
from abstractruntime_provenance.hashing import compute_record_hash

__all__ = ["HashChainedLedgerStore", "verify_ledger_chain", "compute_record_hash"]
