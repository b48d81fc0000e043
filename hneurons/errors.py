"""One exception type for bad input: stages print its message as a single line."""


class HNeuronsError(Exception):
    """A user-facing error: bad params, a missing file, an unsupported model.

    The message names the param or file at fault and fits on one line; stage
    adapters print it without a traceback and exit non-zero.
    """
