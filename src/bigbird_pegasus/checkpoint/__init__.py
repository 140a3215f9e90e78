"""Checkpoint files: from_pretrained / save_pretrained in the reference's names, the hub, and the package's one
atomic file and folder writer."""
