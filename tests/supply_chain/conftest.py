"""Make the lock and SBOM helpers in scripts/ importable by the tests beside this file."""

import sys

from tuneops.core.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
