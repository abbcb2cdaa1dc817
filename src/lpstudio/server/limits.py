"""Every bound of the service in one frozen dataclass, and the checks that apply them.

Nothing here depends on FastAPI: another front end (a WebSocket route, a Ray Serve
deployment) builds one :class:`ServiceLimits` and calls the same checks, so a request
is refused for the same reasons with the same messages everywhere.

Memory model (what the defaults add up to, see :meth:`ServiceLimits.memory_bound_bytes`):
prepared photos (``max_session_memory_bytes``), the clip cache of encoded frames
(``clip_cache_bytes``), the history of shared renders in progress (``max_history_bytes``),
and per open stream at most ``stream_buffer_frames`` rendered frames waiting to be sent.
Per client (address): at most ``max_streams_per_client`` open streams, ``max_photos_per_client``
prepared photos and ``max_sessions_per_client`` sessions, so one client's share of each bound is fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import LimitError
from ..expressions.compose import check_timeline
from ..expressions.timeline import Timeline

MIB = 1024**2
FRAME_BYTES = 512 * 512 * 3
"""One rendered (512,512,3) uint8 frame."""
ENCODED_FRAME_BYTES = 400 * 1024
"""Upper estimate of one NDJSON frame line (base64 JPEG of a display photo of up to 1024 px), for the bound."""
MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room for multipart boundaries and form fields around an uploaded file."""
UPLOAD_MAX_SIDE = 2048
"""Longer side an uploaded photo is decoded to (twice the page's 1024 px display, so a face filling a
quarter of the photo is still cropped to the renderer's 512 px from real pixels)."""
REDUCED_WORK_BYTES_PER_PIXEL = 4 + 3
"""Besides the decoded pixels, per pixel of the reduced image (under twice ``UPLOAD_MAX_SIDE`` a side): Pillow's
4 bytes and its 8-bit RGB copy."""
FINAL_BYTES_PER_PIXEL = 3
"""The final 8-bit RGB resize to at most ``UPLOAD_MAX_SIDE`` a side."""
MAX_DECODED_BYTES_PER_PIXEL = 8
"""The widest pixel an allowed format decodes to (16-bit RGBA)."""


class ByteBudget:
    """A count of bytes held against a limit: the encoded lines of renders in progress, the request bodies
    being received. Used from one thread (the event loop), so it needs no lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        """Hold ``n`` more bytes if they fit under the limit (True), else hold nothing (False)."""
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def release(self, n: int) -> None:
        self.used = max(0, self.used - n)


@dataclass(frozen=True)
class ServiceLimits:
    """Bounds on work, queues, memory and bodies. All sizes in bytes, times in ms or s as named."""

    # --- work per request
    max_clip_ms: float = 30_000.0
    """Longest clip (preset, command or idle loop) one request may ask for."""
    max_command_chars: int = 500
    """Longest command text."""
    max_steps: int = 64
    """Most motions a command may place on its timeline."""
    max_fps: float = 60.0
    """Highest frame rate a request may ask for."""

    # --- admission control
    max_jobs: int = 64
    """Render jobs admitted and not finished (clips, previews, pre-renders) before new ones get 429."""
    max_pending_frames: int = 4096
    """Frames admitted and not yet rendered, over all jobs, before new jobs get 429."""
    max_streams: int = 128
    """Open NDJSON streams before new ones get 429."""
    max_streams_per_client: int = 16
    """Open streams one client (address) may hold before its new ones get 429 (a page needs one or two at a
    time; 16 leaves room for a household or office behind one address, and keeps one client to 1/8 of
    ``max_streams``)."""
    max_streams_per_session: int = 4
    """Open streams one page (session) may hold before its new ones get 429 (the page plays one clip and may
    start the next before the last frames of the current one arrive)."""
    max_pending_sources: int = 8
    """Photo uploads / session starts being decoded or prepared at once before new ones get 429."""
    max_decodes: int = 2
    """Uploads decoded at the same time (each takes up to :attr:`decode_bytes`)."""
    max_pending_speech: int = 4
    """Spoken requests waiting for or in speech synthesis (eSpeak NG speaks one text at a time, ~0.1-2 s
    each) before new ones get 429: four keep the speech thread busy without a long queue behind it."""
    max_plans: int = 2
    """Requests being planned (command parsed, speech synthesised) at the same time before new ones get 429,
    so a flood of distinct commands holds at most this many of the shared worker threads."""
    max_plan_queue: int = 32
    """Requests waiting (on the event loop, holding no thread) for a planning slot before new ones get 429:
    a few pages asking at once wait milliseconds instead of being refused."""
    retry_after_s: float = 2.0
    """Base of the ``Retry-After`` a refused request is given (grows with the backlog)."""

    # --- streams
    stream_buffer_frames: int = 24
    """Frames the renderer may run ahead of what the slowest-needed viewer of a clip was sent."""
    stall_timeout_s: float = 15.0
    """A client that has not taken a frame for this long is cut off and its frames are not rendered."""
    stream_socket_buffer_bytes: int = 64 * 1024
    """Kernel send buffer of each connection (set on the listening socket, see
    :func:`lpstudio.server.streams.bounded_listener`): what a client that does not read can absorb before its
    stream stops making progress; the kernel's own default grows to megabytes (``net.ipv4.tcp_wmem``), which
    on loopback holds whole clips, so an unread stream never looked stalled. 64 KB is about one frame line."""
    max_history_bytes: int = 256 * MIB
    """Encoded frames kept by renders in progress, so late viewers of the same clip can join it."""

    # --- sessions (prepared photos) and caches
    max_sessions: int = 64
    """Prepared photos kept (each ~8.5 MB of appearance features plus its display image)."""
    max_session_memory_bytes: int = 1024 * MIB
    """Memory the prepared photos may use together; idle ones are dropped first."""
    max_faces: int = 4
    """Faces of one photo prepared and animated together (largest first; each ~8.5 MB of features counted in
    the photo's memory, and one renderer row per frame)."""
    max_session_ids: int = 4096
    """Page session ids remembered (a few hundred bytes each); many pages may share one photo."""
    max_photos_per_client: int = 16
    """Prepared photos counted for one client (address); past it the client loses its own oldest, so one
    client cannot evict other pages' photos (a quarter of ``max_sessions``: four busy clients fill the store)."""
    max_sessions_per_client: int = 256
    """Page sessions one client (address) may hold; past it the client loses its own oldest
    (1/16 of ``max_session_ids``: a flood of ``/session`` drops only the flooder's own ids)."""
    clip_cache_bytes: int = 256 * MIB
    """Encoded frames of finished clips, replayed without rendering."""
    speech_memo_bytes: int = 64 * MIB
    """Audio (and start lines) of spoken requests remembered, so a repeated request replays its frames."""

    # --- bodies
    max_upload_bytes: int = 20 * MIB
    max_upload_pixels: int = 40_000_000
    max_decode_bytes: int = 160 * MIB
    """Decoded pixels of one upload (pixels x bytes per pixel: 4 for 8-bit colour, 8 for 16-bit RGBA), checked
    from the header before decoding; 160 MB is the 40 MP limit in 8-bit RGBA."""
    max_json_bytes: int = 64 * 1024
    """Largest JSON request body."""
    max_audio_upload_bytes: int = 10 * MIB
    """Largest speech audio file the page may upload (its length is bounded by ``max_clip_ms`` too)."""
    max_drive_upload_bytes: int = 30 * MIB
    """Largest driving video or motion template ``POST /drive`` takes (server/drive_routes.py)."""
    max_drive_seconds: float = 20.0
    """Longest driving video or motion template, checked from its header before decoding and again while decoding."""
    max_drive_frames: int = 600
    """Most driving frames one request may render (20 s at 30 fps); decoded frames are kept at most
    ``DRIVE_DECODE_SIDE`` (320 px) a side, so one decode holds at most ~184 MB of pixels."""
    max_source_video_seconds: float = 20.0
    """Longest source video (a video as the portrait, ``POST /video-source``), checked from its header before
    any work and again while it is tracked (a header can lie)."""
    max_source_video_frames: int = 600
    """Most source-video frames one job may use (20 s at 30 fps): every frame goes through F, M, W and G."""
    max_source_video_upload_bytes: int = 60 * MIB
    """Largest source video ``POST /video-source`` takes (its driving file is bounded by
    ``max_drive_upload_bytes``)."""
    max_video_jobs: int = 2
    """Video-source jobs running or queued over all clients before new ones get 429: each takes the model
    for seconds per frame between the viewers' frames, so a short queue keeps the wait for a result bounded."""
    max_video_jobs_per_client: int = 1
    """Video-source jobs one client (address) may have running or queued at once (429 past it)."""
    max_video_output_bytes: int = 256 * MIB
    """Largest result a video-source job may write; past it the job fails and its partial file is removed."""
    video_result_ttl_s: float = 600.0
    """How long a finished video-source result is kept for its page to download (then deleted)."""

    # --- the viewer first (server/background.py, server/pacing.py)
    page_gone_s: float = 20.0
    """A page (session) that sent no request for this long, and has no stream open, is gone: its photo's
    background work (idle segments, gaze atlas, pre-renders) is cancelled. The page polls every 5 s or less."""
    start_within_s: float = 15.0
    """A clip should start playing within this long: if the measured render rate cannot deliver it at the asked
    fps, it is rendered at a lower rate (same duration, fewer frames) down to :attr:`min_adaptive_fps`."""
    min_adaptive_fps: float = 5.0
    """The lowest rate the adaptive rate goes down to."""
    idle_fps: float = 12.5
    """Frame rate of the idle segments (a blink is 5 frames at 12.5 fps)."""
    max_background_jobs: int = 2
    """Background jobs (one per photo at a time) queued at once over all photos."""

    # --- shutdown
    drain_timeout_s: float = 30.0
    """On SIGTERM: how long streams in flight may take to finish before they are cut off."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise LimitError(f"limit {name} must be a positive number, got {value!r}")

    # ------------------------------------------------------------------ checks
    def check_command(self, text: str) -> None:
        """Refuse a command longer than :attr:`max_command_chars`."""
        if len(text) > self.max_command_chars:
            raise LimitError(
                f"the command is {len(text)} characters long; the limit is {self.max_command_chars}",
                hint="shorten it, or split it into several commands",
            )

    def check_timeline(self, timeline: Timeline, extra_ms: float = 0.0) -> None:
        """Refuse a timeline over :attr:`max_clip_ms` / :attr:`max_steps` (``extra_ms`` still to be added)."""
        check_timeline(timeline, max_duration_ms=self.max_clip_ms, max_steps=self.max_steps, extra_ms=extra_ms)

    def check_fps(self, fps: float) -> None:
        if not (math.isfinite(fps) and 0 < fps <= self.max_fps):
            raise LimitError(f"fps must be in (0, {self.max_fps:g}], got {fps!r}")

    @property
    def max_clip_frames(self) -> int:
        """Frames of the longest admissible clip at the highest admissible fps."""
        return int(math.ceil(self.max_clip_ms / 1000.0 * self.max_fps)) + 1

    @property
    def max_upload_body_bytes(self) -> int:
        """Largest multipart body: the file limit plus boundaries and fields."""
        return self.max_upload_bytes + MULTIPART_OVERHEAD_BYTES

    @property
    def max_audio_upload_body_bytes(self) -> int:
        """Largest multipart body of an audio upload: the file limit plus boundaries and fields."""
        return self.max_audio_upload_bytes + MULTIPART_OVERHEAD_BYTES

    @property
    def max_drive_body_bytes(self) -> int:
        """Largest multipart body of ``POST /drive``: the file limit plus boundaries and fields."""
        return self.max_drive_upload_bytes + MULTIPART_OVERHEAD_BYTES

    @property
    def max_video_source_body_bytes(self) -> int:
        """Largest multipart body of ``POST /video-source``: the source video, the driving file, boundaries
        and fields."""
        return self.max_source_video_upload_bytes + self.max_drive_upload_bytes + MULTIPART_OVERHEAD_BYTES

    @property
    def decode_bytes(self) -> int:
        """Most memory one upload's decode takes: its decoded pixels (``max_decode_bytes``, and never more than
        the pixel limit at the widest pixel) plus the reduced copies made from them."""
        pixels = self.max_upload_pixels
        decoded = min(self.max_decode_bytes, pixels * MAX_DECODED_BYTES_PER_PIXEL)
        reduced = min(pixels, (2 * UPLOAD_MAX_SIDE) ** 2) * REDUCED_WORK_BYTES_PER_PIXEL
        return decoded + reduced + min(pixels, UPLOAD_MAX_SIDE**2) * FINAL_BYTES_PER_PIXEL

    def memory_bound_bytes(self, batch_size: int = 4) -> int:
        """Upper bound of the memory the service itself holds on top of the loaded model.

        Prepared photos + clip cache + render history + remembered speech + per-stream buffers
        (rendered frames and encoded lines) + the uploads being decoded + the worker's batch.
        """
        per_stream = self.stream_buffer_frames * (FRAME_BYTES + ENCODED_FRAME_BYTES)
        uploads = self.max_pending_sources * self.max_upload_bytes + self.max_decodes * self.decode_bytes
        return (
            self.max_session_memory_bytes
            + self.clip_cache_bytes
            + self.max_history_bytes
            + self.speech_memo_bytes
            + min(self.max_streams, self.max_jobs) * per_stream
            + uploads
            + 2 * batch_size * FRAME_BYTES
        )
