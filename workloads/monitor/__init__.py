"""Production monitoring: drift of the prompts the server sampled against the training set."""
