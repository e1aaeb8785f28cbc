"""Video input: decoding and the official preprocessing."""
