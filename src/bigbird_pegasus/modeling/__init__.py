"""The network only: the block-sparse encoder (`block_sparse.py` holds the whole BigBird idea), the decoder with
its caches, layers, attention, outputs and the bare BigBirdPegasusModel; no generation, no text."""
