"""Import kserve without letting it parse the command line.

``kserve.model_server`` runs ``argparse.parse_known_args()`` on ``sys.argv`` at import time,
with prefix matching on, so ``tuneops serve --config x`` would be read as its
``--configure_logging x`` and exit. Every module of the server that imports kserve does so
inside ``hidden_argv()``, so kserve sees an empty command line whichever module comes first.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def hidden_argv() -> Iterator[None]:
    """Show only the program name in ``sys.argv`` while the block runs."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved
