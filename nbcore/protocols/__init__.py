"""nbcore's built-in protocol providers."""
