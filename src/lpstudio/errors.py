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


class AudioError(LPStudioError):
    """An audio file (or a video's audio track) cannot be read or used."""


class SpeechUnavailableError(BackendUnavailableError):
    """The speech synthesiser (eSpeak NG) is not installed, or a voice is missing."""

    http_status = 503
