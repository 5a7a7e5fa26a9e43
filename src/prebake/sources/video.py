"""Video clips: frames as a ragged uint8 ``frames`` column ``(T, 3, H, W)``, the frame rate, and the audio.

A folder of clips, one clip per video file or per folder (``--kind video``; detected when
the folder holds video files)::

    clips/alice_001.mp4            a video file per clip ...
    clips/alice_001.wav            ... with its audio beside it, under the same name
    clips/bob_002/video.mp4        or a folder per clip: one video file
    clips/bob_002/audio.wav        and at most one audio file (any names)
    clips/carol_003/000001.png     or a folder of frame images, sorted by name (also in a frames/
    clips/carol_003/audio.wav      subfolder); they carry no frame rate: give it with --fps
    clips/train/..., clips/val/... split folders, each a folder of clips like the above (when every
                                   subfolder is named train, val, valid, validation or test)

Items are ``{"frames": uint8 (T, 3, H, W) RGB, "fps": float32}``, and when the clips have
audio also ``{"audio": samples, "sample_rate": Hz}`` (``audio`` ragged, read with soundfile
through :func:`~prebake.sources.audio.read_audio`, so ``channel`` and ``audio_dtype``
work as for audio folders). Keys are the clip names, sorted. Videos are decoded with PyAV
(``pip install 'prebake[video]'``; its wheels bundle FFmpeg), imported only when a clip is
read. An audio stream inside the video file is not read: put the audio beside it.

Every frame of a source must have one size (a ragged column has one trailing shape);
``frame_size=S`` (``--frame-size``) resizes every frame to S x S while decoding (FFmpeg's
area filter for videos, Pillow's bilinear for frame images).

Bad items, with the reason in the manifest: a missing, empty, truncated or undecodable
video (a file cut short either does not open, or decodes fewer frames than its header
declares, or fails mid-stream: all three are reported), a video without frames or without
a frame rate, a frame image that does not decode or has another size, and, when other
clips have audio, a clip without an audio file or with one that cannot be read.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadItemError, SourceError, opt
from ..identity.files import file_identity
from .audio import AUDIO_EXTENSIONS, check_channel, check_dtype, read_audio, require_soundfile
from .base import Source
from .folder import SPLIT_NAMES, is_cache_tree, visible_dirs
from .images import DEFAULT_MAX_PIXELS, decode_image, is_image_file

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm")
#: The subfolder of a clip folder that may hold its frame images.
FRAMES_DIR = "frames"
LAYOUT = ("root/<clip>.mp4 (+ root/<clip>.wav), root/<clip>/<one video> (+ one audio file), "
          "or root/<clip>/<frame images> (+ one audio file)")


def is_video_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS)


def _is_audio_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS)


def require_av() -> None:
    """Fail before any work, with the install command, when PyAV is not installed."""
    if importlib.util.find_spec("av") is None:
        raise SourceError("reading video needs PyAV (its wheels bundle FFmpeg): pip install 'prebake[video]' "
                          "(or pip install av)")


@dataclass(frozen=True)
class Clip:
    """One clip: its name (the key), and its files relative to the source's root."""

    name: str
    video: str | None = None
    frames: tuple[str, ...] = ()
    audio: str | None = None

    def files(self) -> list[str]:
        return [f for f in (self.video, *self.frames, self.audio) if f is not None]


def _listing(path: Path) -> tuple[list[str], list[str]]:
    """(visible files, visible subfolders that are not prebake caches), sorted."""
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as e:
        raise SourceError(f"cannot list {path}: {e.strerror or e}") from None
    files = [e.name for e in entries if e.is_file() and not e.name.startswith(".")]
    dirs = [e.name for e in entries if e.is_dir() and not e.name.startswith(".") and not is_cache_tree(path / e.name)]
    return files, dirs


def list_clips(root: Path) -> list[Clip]:
    """Every clip under ``root`` (see the module docstring), sorted by name."""
    files, dirs = _listing(root)
    audio = {Path(f).stem: f for f in files if _is_audio_file(f)}
    clips = [Clip(Path(f).stem, video=f, audio=audio.get(Path(f).stem)) for f in files if is_video_file(f)]
    clips += [c for c in (_folder_clip(root, d) for d in dirs) if c is not None]
    names = [c.name for c in clips]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SourceError(f"{root} has clips named {twice} twice (a video file and a folder, or two videos of one "
                          "name); rename one of each")
    return sorted(clips, key=lambda c: c.name)


def _folder_clip(root: Path, name: str) -> Clip | None:
    folder = root / name
    files, dirs = _listing(folder)
    videos = [f for f in files if is_video_file(f)]
    audios = [f for f in files if _is_audio_file(f)]
    for what, found in (("video files", videos), ("audio files", audios)):
        if len(found) > 1:
            raise SourceError(f"{folder} holds {len(found)} {what} ({', '.join(found[:4])}); a clip folder holds one "
                              f"video (or frame images) and at most one audio file: {LAYOUT}")
    audio = f"{name}/{audios[0]}" if audios else None
    if videos:
        return Clip(name, video=f"{name}/{videos[0]}", audio=audio)
    frames = [f"{name}/{f}" for f in files if is_image_file(f)]
    if not frames and FRAMES_DIR in dirs:
        frames = [f"{name}/{FRAMES_DIR}/{f}" for f in _listing(folder / FRAMES_DIR)[0] if is_image_file(f)]
    if not frames:
        log.warning("%s holds no video file and no frame images; it is not a clip", folder)
        return None
    return Clip(name, frames=tuple(frames), audio=audio)


def has_video_files(root: Path, depth: int = 2) -> bool:
    """Whether ``root`` or its subfolders (``depth`` levels down) hold a video file: what detection looks for."""
    files, dirs = _listing(root)
    if any(is_video_file(f) for f in files):
        return True
    return depth > 0 and any(has_video_files(root / d, depth - 1) for d in dirs)


class VideoFolderSource(Source):
    """Items ``{"frames", "fps"}`` (and ``{"audio", "sample_rate"}``) from a folder of clips.

    ``fps`` is the frame rate of frame-image folders (videos carry their own; it also stands
    in for a video whose container has none). ``frame_size`` resizes every frame to S x S.
    ``channel`` and ``dtype`` are the audio's channel policy and dtype
    (:mod:`prebake.sources.audio`). All of them are part of the source's identity.
    """

    kind = "video"
    ragged_columns = ("frames", "audio")

    def __init__(self, root: str | os.PathLike[str], fps: float | None = None, frame_size: int | None = None,
                 channel: str = "mix", dtype: str = "int16"):
        require_av()
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SourceError(f"{self.root} is not a directory; a video source is a folder of clips: {LAYOUT}")
        self.clips = list_clips(self.root)
        if not self.clips:
            raise SourceError(f"{self.root} holds no clips (looked for {', '.join(VIDEO_EXTENSIONS)} files and "
                              f"folders of frame images): {LAYOUT}")
        self.fps = None if fps is None else _positive(fps, "fps")
        self.frame_size = None if frame_size is None else int(_positive(frame_size, "frame_size"))
        self.channel, self.dtype = check_channel(channel), check_dtype(dtype)
        self.with_audio = any(c.audio is not None for c in self.clips)
        if self.with_audio:
            require_soundfile()
        stills = next((c for c in self.clips if c.frames), None)
        if stills is not None and self.fps is None:
            raise SourceError(f"{self.root / stills.name} holds frame images, which carry no frame rate; give it with "
                              f"{opt('fps', 25)} (the rate the frames were taken at)")

    def keys(self) -> list[str]:
        return [c.name for c in self.clips]

    def imports(self) -> tuple[str, ...]:
        return ("av", "PIL.Image", *(("soundfile",) if self.with_audio else ()))

    def read(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        if clip.video is not None:
            frames, fps = read_video(self.root / clip.video, self.frame_size, self.fps)
        else:
            frames, fps = read_frames([self.root / f for f in clip.frames], self.frame_size), float(self.fps or 0)
        item: dict[str, Any] = {"frames": frames, "fps": np.float32(fps)}
        if self.with_audio:
            if clip.audio is None:
                raise BadItemError(f"no audio file for the clip (other clips have one): add {clip.name}.wav beside "
                                   f"{clip.video or clip.name}, or move the clip out")
            try:
                item["audio"], item["sample_rate"] = read_audio(self.root / clip.audio, self.channel, self.dtype)
            except BadItemError as e:
                raise BadItemError(f"audio {clip.audio}: {e.reason}") from None
        return item

    def _params(self) -> dict[str, Any]:
        return {"fps": self.fps, "frame_size": self.frame_size, "channel": self.channel, "dtype": self.dtype}

    def item_identities(self) -> list[str]:
        return self._identities(file_identity([self.root / f for c in self.clips for f in c.files()], self.root,
                                              content=self.content_hash))

    def item_identities_from(self, files: dict[str, Any]) -> list[str] | None:
        return self._identities(files) if all(f in files for c in self.clips for f in c.files()) else None

    def _identities(self, files: dict[str, Any]) -> list[str]:
        return [f"{c.name}|" + "|".join(f"{f}:{files[f]}" for f in c.files()) for c in self.clips]

    def describe(self) -> dict[str, Any]:
        return self.describe_files(self.root, self._params(), [self.root / f for c in self.clips for f in c.files()])


def _positive(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not v > 0:
        raise SourceError(f"{opt(name)} is {value!r}; give a positive number")
    return v


def read_video(path: str | os.PathLike[str], frame_size: int | None = None,
               fps: float | None = None) -> tuple[np.ndarray, float]:
    """Every frame of ``path`` as uint8 ``(T, 3, H, W)`` RGB, and its frame rate (``fps`` when it has none).

    ``frame_size`` resizes each frame to S x S. Raises :class:`~prebake.errors.BadItemError`
    with the reason for a file that cannot be used.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise BadItemError("file not found" if not path.exists() else "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise BadItemError("empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise BadItemError(f"not a readable video, or one cut short before its index ({_reason(e)})") from None
    with container:
        if not container.streams.video:
            raise BadItemError("has no video stream")
        stream = container.streams.video[0]
        declared, rate = int(stream.frames or 0), stream.average_rate or stream.guessed_rate
        size: dict[str, Any] = ({} if frame_size is None else
                                {"width": frame_size, "height": frame_size, "interpolation": "AREA"})
        # one converter for the clip: frame.to_ndarray(format=...) sets up a new one per frame, 0.35 against
        # 0.10 ms per 64x64 frame here (H.264, 70 frames)
        rgb = av.video.reformatter.VideoReformatter()
        decoded: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                decoded.append(rgb.reformat(frame, format="rgb24", **size).to_ndarray())
        except av.FFmpegError as e:
            of = f" of {declared}" if declared else ""
            raise BadItemError(f"truncated or corrupt video: decoding failed after {len(decoded)}{of} frames "
                               f"({_reason(e)})") from None
    if not decoded:
        raise BadItemError("holds no video frames")
    if declared and len(decoded) < declared:
        raise BadItemError(f"truncated video: the header says {declared} frames, {len(decoded)} decode")
    if not rate and not fps:
        raise BadItemError(f"has no frame rate in its container; give one with {opt('fps', 25)}")
    return _chw(decoded), float(Fraction(rate)) if rate else float(fps)  # type: ignore[arg-type]


def read_frames(paths: list[Path], frame_size: int | None = None) -> np.ndarray:
    """Frame images as uint8 ``(T, 3, H, W)``; a frame that does not decode, or has another size, is a bad item."""
    decoded: list[np.ndarray] = []
    for p in paths:
        try:
            img = decode_image(p, DEFAULT_MAX_PIXELS)
        except BadItemError as e:
            raise BadItemError(f"frame {p.name}: {e.reason}") from None
        if isinstance(img, np.ndarray):  # decode_image keeps 16-bit grey as an array: no 8-bit RGB frame
            raise BadItemError(f"frame {p.name} is 16-bit greyscale ({img.dtype}, {img.shape[-1]}x{img.shape[-2]}); "
                               "a clip's frames are stored as 8-bit RGB: save the frames as 8-bit images, or "
                               f"bake the frames as an image folder ({opt('kind', 'imagefolder')}), which keeps "
                               "16-bit grey")
        if frame_size is not None and img.size != (frame_size, frame_size):
            from PIL import Image

            img = img.resize((frame_size, frame_size), Image.Resampling.BILINEAR)
        a = np.asarray(img)
        if decoded and a.shape != decoded[0].shape:
            raise BadItemError(f"frame {p.name} is {a.shape[1]}x{a.shape[0]}, the first frame "
                               f"{decoded[0].shape[1]}x{decoded[0].shape[0]}; give every frame one size with "
                               f"{opt('frame_size')}")
        decoded.append(a)
    return _chw(decoded)


def _chw(frames: list[np.ndarray]) -> np.ndarray:
    """(H, W, 3) frames into one contiguous (T, 3, H, W) array: one copy per frame."""
    h, w, c = frames[0].shape
    out = np.empty((len(frames), c, h, w), dtype=np.uint8)
    for k, f in enumerate(frames):
        out[k] = f.transpose(2, 0, 1)
    return out


def _reason(e: Exception) -> str:
    """FFmpeg's message without the errno and file name PyAV adds."""
    text = getattr(e, "strerror", None) or str(e)
    return str(text)


def write_video(path: str | os.PathLike[str], frames: np.ndarray, fps: float, codec: str = "libx264",
                options: dict[str, str] | None = None, container_options: dict[str, str] | None = None) -> Path:
    """Write uint8 ``(T, 3, H, W)`` RGB frames to ``path`` (``.mp4``, ``.mkv``, ...) with PyAV; returns the path.

    For test and example clips: ``codec`` (default ``libx264`` at its default quality) with its
    encoder ``options`` (``{"crf": "18"}``), in yuv420p, so ``H`` and ``W`` must be even; the
    muxer's ``container_options`` (``{"movflags": "faststart"}`` puts an MP4's index first).
    What :func:`read_video` decodes is close to ``frames`` but, through yuv420p, never equal.
    """
    import av

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be uint8 (T, 3, H, W), got {frames.dtype} {frames.shape}")
    path = Path(path)
    with av.open(str(path), "w", options=dict(container_options or {})) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[3], frames.shape[2], "yuv420p"
        stream.options = dict(options or {})
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f.transpose(1, 2, 0)),
                                                                   format="rgb24")))
        container.mux(stream.encode())
    return path


def video_folder(root: Path, **options: Any) -> dict[str, VideoFolderSource]:
    """``{split: source}`` when every subfolder of ``root`` is a split name (and ``root`` holds no video itself),
    else ``{"": source}``."""
    files, dirs = _listing(root)
    splits = dirs and all(d.lower() in SPLIT_NAMES for d in dirs) and not any(is_video_file(f) for f in files)
    if splits and all(visible_dirs(root / d) or has_video_files(root / d, 0) for d in dirs):
        return {d: VideoFolderSource(root / d, **options) for d in dirs}
    return {"": VideoFolderSource(root, **options)}
