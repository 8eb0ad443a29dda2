"""Keeping personal data out of environments: the masking rules applied in SQL, and production's
values scrubbed out of error messages, logs and metadata."""
