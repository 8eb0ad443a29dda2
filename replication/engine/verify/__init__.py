"""Proving a loaded environment: order-independent content checksums, and the audits behind the
asset checks (rows since the load, sequences, orphans, subset closure, masked values)."""
