"""The cdktf app: per-environment config, one module per concern, and the Terraform driver."""

import os as _os

# jsii prints a banner about this machine's node version whenever cdktf loads; it changes
# nothing about the output (the value lists node major versions to stay quiet about).
_os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
_os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
