"""tuneops: the core layer (``tuneops.core``) at the bottom and the CLI (``tuneops.cli``) on top."""

__version__ = "0.1.0"
