"""Errors that reach the user.

Every error lpstudio raises on bad input is an :class:`LPStudioError`: its message
says which file or value was wrong, what was wrong with it, and what to do. The
CLI prints the message (no traceback) and exits with :attr:`LPStudioError.exit_code`;
the web app turns it into a JSON error with a 4xx status.
"""

from __future__ import annotations


class LPStudioError(Exception):
    """Base class of every user-facing error."""

    exit_code: int = 2
    http_status: int = 400

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  -> {hint}")


class ParamError(LPStudioError, ValueError):
    """An editing parameter is unknown, not a number, or out of its range."""


class WeightsError(LPStudioError):
    """A weight file is missing, corrupt, the wrong version, or unsafe to load."""

    exit_code = 3
    http_status = 503


class ImageError(LPStudioError):
    """An input image cannot be read or used."""


class FaceNotFoundError(ImageError):
    """No face was found where one is needed."""

    http_status = 422


class VideoError(LPStudioError):
    """A video cannot be read, decoded or written."""


class CommandError(LPStudioError, ValueError):
    """A free-text or sequence command cannot be understood."""


class BackendUnavailableError(LPStudioError):
    """A requested backend (device, dtype, runtime) is not available here."""

    exit_code = 4


class AddressInUseError(LPStudioError):
    """``serve`` cannot listen: another program already uses the port (checked before the model loads)."""

    exit_code = 6


class LimitError(LPStudioError, ValueError):
    """A request asks for more work than a configured limit allows (clip length, steps, command length...).

    The message names the limit, so the caller knows what would be accepted.
    """


class PayloadTooLargeError(LimitError):
    """An upload or request body is larger than the server accepts."""

    http_status = 413


class OverloadedError(LPStudioError):
    """The server is at capacity (queue, frames in flight, open streams); try again after ``retry_after_s``."""

    http_status = 429

    def __init__(self, message: str, *, reason: str, retry_after_s: float = 1.0, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or f"the server is busy; retry in {max(1, round(retry_after_s))} s")
        self.reason = reason
        self.retry_after_s = retry_after_s


class ShuttingDownError(LPStudioError):
    """The server is draining before it stops: work in flight finishes, new work is refused."""

    http_status = 503

    def __init__(self, message: str = "the server is shutting down", *, retry_after_s: float = 5.0) -> None:
        super().__init__(message, hint="retry in a moment (another instance may take over)")
        self.reason = "draining"
        self.retry_after_s = retry_after_s


class RenderError(LPStudioError):
    """The renderer failed on valid input (a numerical fault, out of memory): not the caller's mistake."""

    exit_code = 5
    http_status = 500


class NonFiniteOutputError(RenderError):
    """The networks produced NaN or Inf pixels (for example a float16 overflow).

    ``frames`` are the batch rows that were not finite; ``partial`` holds the batch's
    frames as ``(512,512,3)`` uint8 arrays with ``None`` at those rows, so a caller that
    batched several requests can deliver the good frames and fail only the bad ones.
    """

    def __init__(self, message: str, *, frames: list[int], partial: list | None = None) -> None:
        super().__init__(message, hint="try again, or use --dtype float32 / --backend eager")
        self.frames = frames
        self.partial = partial or []


class AudioError(LPStudioError):
    """An audio file (or a video's audio track) cannot be read or used."""


class SpeechUnavailableError(BackendUnavailableError):
    """The speech synthesiser (eSpeak NG) is not installed, or a voice is missing.

    A server without it answers 501 (not implemented here; never retried as "busy")."""

    http_status = 501
