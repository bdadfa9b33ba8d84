"""tuneops: the base layer (errors, config, atomic I/O, paths) and the CLI over it all."""

__version__ = "0.1.0"
