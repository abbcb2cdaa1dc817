"""Speech audio -> mouth targets, for speech the user brings (no phonemes known).

Per analysis frame (:data:`WINDOW_MS` windows every :data:`HOP_MS`) of the mono signal:

* **loudness**: the level (dB) of the 80-1500 Hz band, where vowels carry their energy (fricatives
  such as 's' sit higher and open the mouth little). Between the speech threshold (the louder of
  the noise floor + :data:`NOISE_MARGIN_DB` and the 95th-percentile level - :data:`SPEECH_RANGE_DB`)
  and that 95th percentile it maps to [0, 1]: below the threshold is silence and the mouth closes.
* **voicing**: the normalised autocorrelation peak at lags of 70-400 Hz pitch.
* **formants** on voiced frames: LPC (autocorrelation method, order :data:`LPC_ORDER` at
  :data:`LPC_RATE` Hz, pre-emphasis and a Hamming window), the roots of the predictor polynomial
  give the resonances; F1 is the first with a narrow bandwidth above 200 Hz, F2 the next one.
  Formant ranges are scaled up to :data:`FEMALE_FORMANT_SCALE` for higher voices (by median F0).

Shape: high F1 opens the mouth more ('아'), high F2 spreads it ('이'), low F2 rounds it ('우/오');
unvoiced sound opens it a little; silence closes it. The targets go through the same look-ahead and
co-articulation smoothing as phonemes (:func:`lpstudio.speech.lipsync.track_from_targets`).

Any sample rate, mono or stereo (channels are averaged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .audio import AudioClip, resample
from .lipsync import STEP_MS, MouthTrack, grid_size, track_from_targets

ANALYSIS_RATE: int = 16_000
LPC_RATE: int = 10_000
"""Formant analysis rate: resonances up to 5 kHz (5 formants), as is usual for LPC formant tracking."""
LPC_ORDER: int = 12
WINDOW_MS: float = 25.0
HOP_MS: float = 10.0
PRE_EMPHASIS_HZ: float = 50.0
LOW_BAND_HZ: tuple[float, float] = (80.0, 1500.0)
NOISE_PERCENTILE: float = 10.0
PEAK_PERCENTILE: float = 95.0
NOISE_MARGIN_DB: float = 10.0
SPEECH_RANGE_DB: float = 30.0
SILENCE_DB: float = -70.0
"""Anything quieter than this (dBFS of the band) is silence whatever the statistics."""
PITCH_RANGE_HZ: tuple[float, float] = (70.0, 400.0)
VOICING_MIN: float = 0.4
FORMANT_MAX_BANDWIDTH_HZ: float = 500.0
F1_RANGE_HZ: tuple[float, float] = (200.0, 1100.0)
F2_MAX_HZ: float = 3200.0
F2_MIN_GAP_HZ: float = 200.0

# Shape mapping for a typical adult male voice (eSpeak's defaults); scaled for higher voices.
F1_CLOSED_HZ: float = 300.0
F1_OPEN_HZ: float = 750.0
F2_SPREAD_FROM_HZ: float = 1500.0
F2_SPREAD_FULL_HZ: float = 2100.0
F2_ROUND_FROM_HZ: float = 1150.0
F2_ROUND_FULL_HZ: float = 800.0
FEMALE_FORMANT_SCALE: float = 1.17
F0_MALE_HZ: float = 120.0
F0_FEMALE_HZ: float = 220.0

OPEN_BASE: float = 0.4
"""Opening of a loud voiced frame with a low F1; F1 adds up to 1 - OPEN_BASE."""
UNVOICED_OPEN: float = 0.25
"""Opening of a loud unvoiced frame (fricatives, breath)."""
POUT_PER_ROUND: float = 0.6
MEDIAN_HOPS: int = 5
"""Formant tracks are median-filtered over this many hops (removes single-frame outliers)."""


@dataclass(frozen=True)
class Analysis:
    """Per-hop features (``(n,)`` each, hop :data:`HOP_MS`, frame ``i`` centred at ``i * HOP_MS``) and targets."""

    hop_ms: float
    loudness: np.ndarray
    """Speech loudness in [0, 1] (0 = silence)."""
    voiced: np.ndarray
    f1_hz: np.ndarray
    """NaN where unvoiced."""
    f2_hz: np.ndarray
    f0_hz: float
    targets: np.ndarray
    """``(n, 4)`` open, round, spread, pout in [0, 1]."""
    duration_ms: float

    def track(self) -> MouthTrack:
        """The mouth track (look-ahead + co-articulation smoothing) on the lipsync grid."""
        n = grid_size(self.duration_ms, STEP_MS)
        grid = np.arange(n) * STEP_MS
        hops = np.arange(len(self.loudness)) * self.hop_ms
        raw = np.stack([np.interp(grid, hops, self.targets[:, c]) for c in range(self.targets.shape[1])], axis=1)
        return track_from_targets(raw, np.zeros(n), self.duration_ms)


def _frames(x: np.ndarray, rate: int, n_hops: int) -> np.ndarray:
    """``(n_hops, win)`` windows centred on the hops (zero-padded at the ends)."""
    win = int(round(WINDOW_MS * rate / 1000.0))
    hop = HOP_MS * rate / 1000.0
    pad = np.pad(x, (win, win + int(hop) + 1))
    starts = (np.arange(n_hops) * hop).astype(np.int64) + win - win // 2
    idx = starts[:, None] + np.arange(win)[None, :]
    return pad[idx]


def _band_db(frames: np.ndarray, rate: int) -> np.ndarray:
    win = np.hanning(frames.shape[1])
    spec = np.abs(np.fft.rfft(frames * win, axis=1)) ** 2
    freqs = np.fft.rfftfreq(frames.shape[1], 1.0 / rate)
    band = (freqs >= LOW_BAND_HZ[0]) & (freqs <= LOW_BAND_HZ[1])
    power = spec[:, band].sum(axis=1) / (np.sum(win**2) * frames.shape[1] / 2.0)
    return 10.0 * np.log10(np.maximum(power, 1e-12))


def _voicing(frames: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(normalised autocorrelation peak, its pitch in Hz) per frame."""
    x = frames - frames.mean(axis=1, keepdims=True)
    n = x.shape[1]
    spec = np.fft.rfft(x, 2 * n, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :n]
    lo, hi = int(rate / PITCH_RANGE_HZ[1]), min(n - 1, int(rate / PITCH_RANGE_HZ[0]))
    seg = ac[:, lo:hi]
    # unbiased: divide by the overlap length, normalise by the zero-lag energy
    seg = seg * (n / (n - np.arange(lo, hi)))[None, :]
    k = np.argmax(seg, axis=1)
    peak = seg[np.arange(len(k)), k] / np.maximum(ac[:, 0], 1e-12)
    return np.clip(peak, 0.0, 1.0), rate / (lo + k)


def lpc(frame: np.ndarray, order: int = LPC_ORDER) -> np.ndarray | None:
    """Predictor polynomial ``[1, a1..a_order]`` of one windowed frame (autocorrelation method)."""
    from scipy.linalg import solve_toeplitz

    r = np.correlate(frame, frame, mode="full")[len(frame) - 1 : len(frame) + order]
    if r[0] <= 1e-10:
        return None
    r = r.copy()
    r[0] *= 1.0 + 1e-9  # white-noise correction keeps the system well conditioned
    try:
        a = solve_toeplitz(r[:order], -r[1 : order + 1])
    except np.linalg.LinAlgError:
        return None
    return np.concatenate([[1.0], a])


def formants(frame: np.ndarray, rate: int = LPC_RATE) -> tuple[float, float]:
    """(F1, F2) in Hz of one frame at ``rate`` (NaN when not found)."""
    emph = np.append(frame[0], frame[1:] - math.exp(-2 * math.pi * PRE_EMPHASIS_HZ / rate) * frame[:-1])
    a = lpc(emph * np.hamming(len(emph)))
    if a is None:
        return math.nan, math.nan
    roots = np.roots(a)
    roots = roots[np.imag(roots) > 0]
    freqs = np.angle(roots) * rate / (2 * math.pi)
    bws = -rate / math.pi * np.log(np.maximum(np.abs(roots), 1e-12))
    cand = np.sort(freqs[(bws < FORMANT_MAX_BANDWIDTH_HZ) & (freqs > F1_RANGE_HZ[0])])
    f1 = next((f for f in cand if f <= F1_RANGE_HZ[1]), math.nan)
    if math.isnan(f1):
        return math.nan, math.nan
    f2 = next((f for f in cand if f1 + F2_MIN_GAP_HZ <= f <= F2_MAX_HZ), math.nan)
    return float(f1), float(f2)


def _median(x: np.ndarray, k: int) -> np.ndarray:
    """Median filter that ignores NaN (NaN stays NaN)."""
    out = x.copy()
    h = k // 2
    for i in np.flatnonzero(~np.isnan(x)):
        w = x[max(0, i - h) : i + h + 1]
        out[i] = np.nanmedian(w)
    return out


def _fill(x: np.ndarray, speech: np.ndarray) -> np.ndarray:
    """NaN filled by linear interpolation between known values inside speech; 0 elsewhere."""
    out = np.zeros_like(x)
    known = ~np.isnan(x)
    if known.any():
        idx = np.arange(len(x))
        out = np.interp(idx, idx[known], x[known])
    out[~speech] = 0.0
    return out


def analyse(clip: AudioClip) -> Analysis:
    """Mouth targets of a speech recording (see the module docstring)."""
    mono = clip.mono()
    duration_ms = clip.duration_ms
    x16 = resample(mono, clip.sample_rate, ANALYSIS_RATE).astype(np.float64)
    x16 = x16 - (x16.mean() if len(x16) else 0.0)
    n_hops = int(math.floor(duration_ms / HOP_MS)) + 1
    frames16 = _frames(x16, ANALYSIS_RATE, n_hops)

    db = _band_db(frames16, ANALYSIS_RATE)
    audible = db > SILENCE_DB
    if audible.any():
        floor = float(np.percentile(db, NOISE_PERCENTILE))
        peak = float(np.percentile(db[audible], PEAK_PERCENTILE))
        threshold = max(floor + NOISE_MARGIN_DB, peak - SPEECH_RANGE_DB, SILENCE_DB)
        loud = np.clip((db - threshold) / max(peak - threshold, 1e-6), 0.0, 1.0)
    else:
        loud = np.zeros(n_hops)
    speech = loud > 0.0

    peak_ac, pitch = _voicing(frames16, ANALYSIS_RATE)
    voiced = speech & (peak_ac >= VOICING_MIN)
    f0 = float(np.median(pitch[voiced])) if voiced.any() else F0_MALE_HZ
    scale = 1.0 + (FEMALE_FORMANT_SCALE - 1.0) * float(np.clip((f0 - F0_MALE_HZ) / (F0_FEMALE_HZ - F0_MALE_HZ), 0, 1))

    x10 = resample(x16, ANALYSIS_RATE, LPC_RATE).astype(np.float64)
    frames10 = _frames(x10, LPC_RATE, n_hops)
    f1 = np.full(n_hops, np.nan)
    f2 = np.full(n_hops, np.nan)
    for i in np.flatnonzero(voiced):
        f1[i], f2[i] = formants(frames10[i])
    f1, f2 = _median(f1, MEDIAN_HOPS), _median(f2, MEDIAN_HOPS)

    f1n = np.clip((_fill(f1, speech) / scale - F1_CLOSED_HZ) / (F1_OPEN_HZ - F1_CLOSED_HZ), 0.0, 1.0)
    f2s = _fill(f2, speech) / scale
    spread = np.clip((f2s - F2_SPREAD_FROM_HZ) / (F2_SPREAD_FULL_HZ - F2_SPREAD_FROM_HZ), 0.0, 1.0)
    rounded = np.clip((F2_ROUND_FROM_HZ - f2s) / (F2_ROUND_FROM_HZ - F2_ROUND_FULL_HZ), 0.0, 1.0)
    rounded[~speech] = 0.0
    open_ = loud * np.where(voiced, OPEN_BASE + (1.0 - OPEN_BASE) * f1n, UNVOICED_OPEN)
    targets = np.stack([open_, rounded, spread, rounded * POUT_PER_ROUND], axis=1)
    targets[~speech] = 0.0
    return Analysis(HOP_MS, loud, voiced, f1, f2, f0, np.clip(targets, 0.0, 1.0), duration_ms)


def audio_track(clip: AudioClip) -> MouthTrack:
    """``analyse(clip).track()``."""
    return analyse(clip).track()
