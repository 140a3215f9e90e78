"""From texts to summaries: the Summarizer (long documents truncated or chunked, batched by length), loading
the model by name, output files and ROUGE evaluation."""
