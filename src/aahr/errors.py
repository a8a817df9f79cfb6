"""The one exception type the command line turns into a clear message (no traceback)."""


class AahrError(Exception):
    """A problem the user can fix: bad config, missing or malformed file. The message names it."""
