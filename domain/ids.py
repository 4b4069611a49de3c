"""The ids of the aggregates a store holds one of: fixed, so that any command finds them without a lookup, and
importable without the aggregates' modules (a run asks whether the sandbox exists without loading it)."""

from uuid import NAMESPACE_URL, uuid5

REGISTRY_ID = uuid5(NAMESPACE_URL, "keysync:master-key-registry")
SANDBOX_ID = uuid5(NAMESPACE_URL, "keysync:sandbox")
AUDIT_CHAIN_ID = uuid5(NAMESPACE_URL, "keysync:audit-chain")
