"""The task heads over the bare model, one file each: the summarizer (with `generate`), sequence classification,
question answering and the decoder alone as a causal LM (with `generate`)."""
