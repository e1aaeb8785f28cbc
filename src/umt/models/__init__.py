"""UMT models: the video encoder, the text encoder, their configurations and the model factories."""
