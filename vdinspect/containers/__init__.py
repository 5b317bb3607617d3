"""One module per image format, and the registry that detects them by magic."""
