"""Stage 1, ingest: one module per kind of source, and ``stage.ingest`` that reads them all."""
