"""Text on the way into and out of the model: the tokenizer, the `<n>` newline symbol, paragraphs and
sentences, and the readers of input documents."""
