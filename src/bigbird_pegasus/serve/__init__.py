"""The HTTP service over the pipeline: the Hugging Face Inference API's summarization task, a small page for people,
health, information and Prometheus metrics. One model, run by one worker thread off the event loop on batches of
requests grouped by arrival window and length, behind a bounded queue.

    from bigbird_pegasus.serve.server import serve_forever
"""
