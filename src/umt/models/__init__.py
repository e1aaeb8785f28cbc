"""UMT models: the video encoder, its configuration and the model factory."""
