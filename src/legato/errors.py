"""The one exception type the CLI turns into a single error line."""


class LegatoError(Exception):
    """A user-facing error: bad input, bad config, missing file.

    The CLI prints ``error: <message>`` and exits with status 2, without a traceback.
    """
