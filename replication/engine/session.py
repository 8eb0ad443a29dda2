"""Session settings that the data path depends on, pinned on every connection.

CSV text produced by COPY depends on the session: dates follow DateStyle, timestamptz follows
TimeZone, floats follow extra_float_digits, bytea follows bytea_output. Servers and databases can
set any defaults they like, so each connection sets these itself; then a value leaves prod and
enters a target as exactly the same text, and checksums computed on both sides agree.
"""

PINNED_SETTINGS: dict[str, str] = {
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "client_encoding": "UTF8",
    "standard_conforming_strings": "on",
    # Every name the engine writes is schema-qualified; an empty path keeps user objects from
    # shadowing catalog functions, as pg_dump does.
    "search_path": "pg_catalog",
}


def libpq_options() -> str:
    """The settings as a libpq `options` string, applied by the server at connection start."""
    return " ".join(f"-c {name}={value.replace(' ', '')}" for name, value in PINNED_SETTINGS.items())
