"""Stamping a commit's records (the provenance plugin's per-commit work) gives exactly the hashes of the reference
definition -- and the very digests earlier versions wrote, so chains already in stores keep verifying."""

from __future__ import annotations

import hashlib
import json

from abstractruntime import codec
from abstractruntime.models import StepRecord, StepStatus
from abstractruntime_provenance import compute_record_hash, verify_ledger_chain
from abstractruntime_provenance.chain import chain_records, stamp_record


def records():
    """Records with what the fast canonical form must get right: floats in every notation (nested in lists, dicts
    and tuples), non-ASCII text, a 64-bit integer, a stale ``record_hash`` and a ``signature`` (never hashed)."""
    return [
        StepRecord(run_id="r-1", step_id="s-1", node_id="n\u00e9", status=StepStatus.COMPLETED,
                   effect={"type": "llm_call", "payload": {"temperature": 0.7, "big": 1e16, "tiny": 1e-07,
                                                           "nested": [1, 2.5, {"x": (3, 4.0)}]}},
                   result={"text": "caf\u00e9 \u2603 \U0001F600", "n": 2**63}, started_at="2024-01-01T00:00:00+00:00",
                   ended_at="2024-01-01T00:00:01+00:00", attempt=2, idempotency_key="k"),
        StepRecord(run_id="r-1", step_id="s-2", node_id="b", status=StepStatus.FAILED, error="boom",
                   result={"ok": False, "items": [[], {}, [None, True]]}, started_at="2024-01-01T00:00:02+00:00",
                   record_hash="stale", signature="old-sig"),
        StepRecord(run_id="r-1", step_id="s-3", node_id="c", status=StepStatus.COMPLETED, result={"f": -0.0},
                   started_at="2024-01-01T00:00:03+00:00", actor_id="a", session_id="s"),
    ]


#: written by abstractruntime_provenance before its per-commit path was made cheaper (same records as above)
SHA256_CHAIN = ["5184845e7437d9a713bcfb636dcc6118692714878f5e34a55fa1d5cc0ef285b4",
                "15baae8b8f87630a02a72191a271fec52fe6e3f52644ba51eb9338e568088856",
                "6cdda5c9467eb644151da8c89a1f78981ad1818eb7e9940da6c2fc6fd02b8114"]
SHA512_HEAD_AFTER_ABC = ("sha512:232d200bbf28d842719d54d5fa8f2b0832e71a816bf2325de08076d8dd60f820ace8f12ecc3f0b1d1a1405f"
                         "27d627ba97b7929f2b3b2d2f8d73e42db8e744179")


def reference_hash(row, prev_hash):
    clean = {k: v for k, v in row.items() if k not in ("record_hash", "signature")}
    clean["prev_hash"] = prev_hash
    canonical = json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_chained_records_have_the_reference_hashes_and_the_digests_written_before():
    recs = records()
    head = chain_records(recs, None)
    assert [r.record_hash for r in recs] == SHA256_CHAIN and head == SHA256_CHAIN[-1]
    assert recs[1].signature == "old-sig"  # no signer: the field is left as it was
    prev = None
    for record in recs:
        row = codec.record_to_dict(record)
        assert record.prev_hash == prev
        assert record.record_hash == reference_hash(row, prev) == compute_record_hash(record=row, prev_hash=prev)
        prev = record.record_hash
    stored = [json.loads(codec.encode_record(r)) for r in recs]  # as a store returns them
    assert verify_ledger_chain(stored)["ok"]


def test_other_algorithms_and_single_records_stamp_as_before():
    recs = records()
    assert chain_records(recs, "abc", algorithm="sha512") == SHA512_HEAD_AFTER_ABC
    assert verify_ledger_chain([json.loads(codec.encode_record(r)) for r in recs])["errors"][0]["type"] == \
        "prev_hash_mismatch"  # the first record extends "abc", a head outside these records: all else verifies
    record = records()[0]
    digest = stamp_record(record, "p")
    assert digest == record.record_hash == reference_hash(codec.record_to_dict(record), "p")
