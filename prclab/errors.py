"""The one exception type for errors a user can cause; the bottom layer every package imports."""


class PrclabError(Exception):
    """An error the user can cause and fix (bad protocol, dataset, recording, port...).

    The message says what went wrong and where; the CLI prints it on one line and exits with code 2.
    """
