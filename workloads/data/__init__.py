"""Dataset pipeline: ingest, normalise, validate, scrub, dedup, decontaminate, snapshot."""
