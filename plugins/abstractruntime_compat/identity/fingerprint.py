"""``ActorFingerprint``: a stable identifier for who or what acts in a run (reference API). Identifier only."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Optional

from attrs import frozen


@frozen
class ActorFingerprint:
    actor_id: str
    kind: str
    display_name: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None

    @classmethod
    def from_metadata(
        cls, *, kind: str, display_name: Optional[str] = None, metadata: Optional[Dict[str, Any]] = None
    ) -> "ActorFingerprint":
        meta = dict(metadata or {})
        canonical = json.dumps(
            {"kind": kind, "display_name": display_name, "metadata": meta},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        )
        actor_id = "ar_" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:24]
        return cls(actor_id=actor_id, kind=kind, display_name=display_name, metadata=meta)

    def to_dict(self) -> Dict[str, Any]:
        return {"actor_id": self.actor_id, "kind": self.kind, "display_name": self.display_name,
                "metadata": self.metadata}
