"""Who owns ``session`` and ``global`` memory: the run ids the reference uses as owners.

One function for every plugin that keeps memory per session (the KG memory of ``kg_memory``, the session
attachments of the AbstractCore integration), so session memory and attachments share one owner run:

* :func:`session_memory_owner_run_id` -- ``session_memory_<sid>`` when the stripped session id is made of
  ``[A-Za-z0-9_-]``, else ``session_memory_sha_<first 32 hex of sha256(sid)>``;
* :func:`global_memory_owner_run_id` -- ``$ABSTRACTRUNTIME_GLOBAL_MEMORY_RUN_ID`` when it is such a safe id, else
  ``global_memory``.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from abstractruntime.errors import ValidationError

SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")
GLOBAL_MEMORY_ENV = "ABSTRACTRUNTIME_GLOBAL_MEMORY_RUN_ID"
DEFAULT_GLOBAL_MEMORY_RUN_ID = "global_memory"


def session_memory_owner_run_id(session_id: Any) -> str:
    """The owner run id of a session's memory (see the module doc). A blank id raises ``ValueError``."""
    sid = str(session_id or "").strip()
    if not sid:
        raise ValidationError("session_id is required")
    if SAFE_ID.fullmatch(sid):
        return f"session_memory_{sid}"
    return f"session_memory_sha_{hashlib.sha256(sid.encode('utf-8')).hexdigest()[:32]}"


def global_memory_owner_run_id() -> str:
    """``$ABSTRACTRUNTIME_GLOBAL_MEMORY_RUN_ID`` if it is a safe id (``[A-Za-z0-9_-]+``), else ``global_memory``."""
    value = str(os.environ.get(GLOBAL_MEMORY_ENV) or "").strip()
    return value if value and SAFE_ID.fullmatch(value) else DEFAULT_GLOBAL_MEMORY_RUN_ID


__all__ = ["session_memory_owner_run_id", "global_memory_owner_run_id", "GLOBAL_MEMORY_ENV",
           "DEFAULT_GLOBAL_MEMORY_RUN_ID"]
