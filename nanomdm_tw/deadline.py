"""
Waiting on another server for at most so long.

Every outbound call (webhook, Declarative Management, auth proxy, escrow
key unlock) goes through ``within``: a black-holed peer costs a request
its timeout, never a connection held forever.
"""

from twisted.internet.defer import Deferred


class NoAnswerInTime(Exception):
    """The other side did not answer within the timeout."""


async def within(attempt: Deferred, seconds: float, clock) -> object:
    """
    The result of ``attempt``, cancelled after ``seconds`` on ``clock``.

    Twisted's addTimeout reports a timeout only when cancelling yields
    CancelledError; an HTTP client yields its own errors, so we keep track.
    """
    timed_out = []

    def time_out() -> None:
        timed_out.append(True)
        attempt.cancel()

    timer = clock.callLater(seconds, time_out)
    try:
        return await attempt
    except Exception as e:
        if timed_out:
            raise NoAnswerInTime(f"no answer within {seconds:g}s") from e
        raise
    finally:
        if timer.active():
            timer.cancel()
