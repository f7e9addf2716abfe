"""nbcore's built-in backend providers."""
