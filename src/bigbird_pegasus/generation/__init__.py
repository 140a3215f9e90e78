"""`generate`: its settings and GenerationConfig, the cached decoder, greedy search and sampling, beam search,
the logits processors, and the mixins that give the heads their `generate`."""
