"""Cheap readability checks of audio and video files, for the manifest (the encoders decode them later).

Both raise an exception with the reason when the file cannot be read; the manifest turns it into a
``BadSampleError`` that names the list file and line.
"""

from __future__ import annotations

import os
import warnings


def check_audio(path: str | os.PathLike[str]) -> None:
    """The file opens as audio with at least one sample (soundfile; librosa/audioread as the fallback)."""
    path = os.fspath(path)
    try:
        import soundfile as sf

        info = sf.info(path)
        frames = info.frames
    except Exception as sf_exc:
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frames = int(librosa.get_duration(path=path) * 1000)
        except Exception:
            raise ValueError(f"not a readable audio file ({sf_exc})") from None
    if frames <= 0:
        raise ValueError("the audio has no samples")


def check_video(path: str | os.PathLike[str]) -> None:
    """OpenCV opens the file and decodes its first frame."""
    import cv2

    cap = cv2.VideoCapture(os.fspath(path))
    try:
        if not cap.isOpened():
            raise ValueError("OpenCV cannot open it as a video")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise ValueError("no frame could be decoded")
    finally:
        cap.release()
