"""The one exception type the CLI turns into a clear message and a non-zero exit."""


class BenchError(Exception):
    """Bad input or a failed run: the message says what was wrong and what is valid."""
