"""bigbird_pegasus: a fast, standalone PyTorch implementation of BigBird-Pegasus."""
