"""A finished snapshot: its manifest, the proof that every object is what the manifest says,
retention, reading its CSV back in bounded memory, and whether it can be reused."""
