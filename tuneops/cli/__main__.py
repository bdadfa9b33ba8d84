"""``python -m tuneops.cli``: the same entry point as the ``tuneops`` command."""

from tuneops.cli import main

main()
