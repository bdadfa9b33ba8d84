#!/usr/bin/env python
"""Create the Terraform state bucket of each environment (idempotent).

    python scripts/bootstrap_state.py --env local        # against moto's server
    python scripts/bootstrap_state.py --env dev --env prod

The bucket is versioned, encrypted with a KMS key of its own (alias/<bucket>), has every public
access blocked and a TLS-only policy. Running it again changes nothing that is already right.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.bootstrap import bootstrap_state_bucket
from infra.config import load_environment
from tuneops.core.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", action="append", required=True, help="environment (repeatable)")
    args = parser.parse_args(argv)
    try:
        for name in args.env:
            result = bootstrap_state_bucket(load_environment(name))
            what = "; ".join(result.actions) or "already in place"
            print(f"{name}: state bucket {result.bucket} ({what}), key {result.kms_key_arn}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
