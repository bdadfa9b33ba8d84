"""The demo's steps, one module each, in the order ``tuneops.cli.demo.runner.STEPS`` runs them."""
