"""The bottom layer: errors, typed config, atomic I/O, paths, S3, tracking and git metadata.

Nothing in here imports any other part of the project; every other layer may import it.
"""
