"""Production monitoring: prompt sampling and drift against the training set."""
