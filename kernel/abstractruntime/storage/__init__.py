"""Store interfaces (:mod:`abstractruntime.storage.base`). The reference's other ``abstractruntime.storage`` names
(``InMemoryRunStore``, ``JsonFileRunStore``, ``HashChainedLedgerStore``, ...) and its submodules
(``.sqlite``, ``.in_memory``, ...) live in plugins and resolve through the namespace overlays."""

from .. import _namespace
from .base import Capability, CommitView, LedgerStore, RunStore, StepCommit, StoreBackend

# The reference's list: exactly these three from here, the rest from the overlays.
__getattr__, __dir__ = _namespace.package_getattr(__name__, ["RunStore", "LedgerStore", "QueryableRunStore"])
