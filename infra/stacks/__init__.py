"""One module per concern; ``infra.app`` composes them into the stacks of each environment."""
