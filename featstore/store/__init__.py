"""The store: where rows live and how they are read back.

Owns the on-disk layout and its locations (local folders and object storage), the
provenance every model's rows share, and the DuckDB views (`images`, `faces`, `frames`,
`identities`, `valid_frames`) every reader goes through.

May import: `featstore.errors` only. Everything else in featstore builds on this package,
never the other way round.
"""
