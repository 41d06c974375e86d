"""
Errors that carry the HTTP status a client should see.

Services and storage raise these; the resources turn them into responses.
Anything else that escapes is a server fault and becomes a 500.
"""


class HTTPStatusError(Exception):
    """An error whose HTTP status is known where it is raised."""

    status = 500

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class MessageError(HTTPStatusError):
    """The client sent something we cannot decode or that fails validation."""

    status = 400


class AuthenticationError(HTTPStatusError):
    """
    The device could not be authenticated.

    Never 401 on a device path: a device unenrolls when it sees one.
    """

    status = 403


class StorageBusy(HTTPStatusError):
    """
    The database did not take the work in time, or too much is waiting for it.

    503 with Retry-After: a device tries again later (never 401: it would
    unenroll), an API client sees the same status and can retry too.
    """

    status = 503

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
