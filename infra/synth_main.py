"""``python -m infra.synth_main``: the app entry named in ``infra/cdktf.json``.

Synthesizes every environment (or those in $TUNEOPS_ENVS, comma-separated) into the folder the
cdktf CLI passes in $CDKTF_OUTDIR, else the configured output folder. The project's own
commands (`tuneops infra synth`) do the same in-process; this exists so that `cdktf synth` and
`cdktf synth --hcl` (the way out to plain Terraform) work too.
"""

from __future__ import annotations

import os
from pathlib import Path

from infra.app import synth
from infra.config import load_environment, load_settings
from tuneops.core.environments import environment_names


def main() -> None:
    names = [e for e in os.environ.get("TUNEOPS_ENVS", "").split(",") if e] or environment_names()
    outdir = os.environ.get("CDKTF_OUTDIR")
    envs = [load_environment(name) for name in names]
    result = synth(envs, load_settings(), Path(outdir) if outdir else None)
    print(f"synth: {sum(len(s) for s in result.stacks.values())} stacks -> {result.outdir}")


if __name__ == "__main__":
    main()
