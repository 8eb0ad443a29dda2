"""Taking a snapshot of production: one consistent transaction, COPY out over several connections,
and rows too large for one COPY message written in chunks."""
