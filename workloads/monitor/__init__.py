"""Production monitoring: drift of sampled prompts against the training set, and the sink that
samples the GPU runtime's prompts from KServe's inference logger."""
