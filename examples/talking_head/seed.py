"""The talking-head workload's two datasets, rebuilt for the comparison (``--data_path original`` and ``optimised``).

``original`` (the seed's ``FLOATDataset``): every ``__getitem__`` decodes its clip's video
and reads its audio, runs the audio encoder (``inference(audio, seq_len=num_frames)``) and
the motion encoder on the window, on the window before it and on the reference frame.
``optimised`` (the seed's ``dataset_test.py``): ``_preprocess_all_data`` runs all of that once
per clip into an in-memory list of dicts (video frames, ``w_audio``, motion latents,
reference motion), saved to ``CACHE_DIR/optimised.pt`` and loaded from there on the next run
unless ``--force_preprocess``, with no check that the clips or the encoders are the ones it
was made from; ``__getitem__`` slices tensors. Both run in a DataLoader with the seed's
``num_workers``.

Both index the clips the bake did not skip, and the same windows as ``prebake.Windows``
(every ``stride`` frames from frame ``window``), so the three paths train on equal samples;
the decoding is prebake's (:func:`~prebake.sources.video.read_video`), so the frames
are equal too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import prebake
from prebake.sources.audio import read_audio
from prebake.sources.video import VideoFolderSource, read_video

from .config import Config
from .encoders import AudioEncoder, MotionEncoder

log = logging.getLogger("examples.talking_head")


class Clips:
    """The clips' files and frame counts, and which clip and first frame each sample index is."""

    def __init__(self, root: Path, cache: prebake.Cache, window: int, stride: int):
        source = VideoFolderSource(root)
        skipped = {s["key"] for s in cache.manifest["skipped"]}
        kept = [c for c in source.clips if c.name not in skipped]
        self.files = [(source.root / str(c.video), source.root / str(c.audio)) for c in kept]
        self.num_frames = np.diff(cache.column("motion").offsets)  # one motion latent per frame
        self.window = window
        starts = [np.arange(window, n - window + 1, stride) for n in self.num_frames]
        self.item = np.concatenate([np.full(len(s), j) for j, s in enumerate(starts)]).astype(np.int64)
        self.start = np.concatenate(starts).astype(np.int64)

    def __len__(self) -> int:
        return len(self.item)


def sample(j: int, s: int, window: int, w_audio: torch.Tensor, motion_cur: torch.Tensor, motion_prev: torch.Tensor,
           reference: torch.Tensor) -> dict[str, Any]:
    return {"motion": motion_cur, "motion_context": motion_prev, "w_audio": w_audio, "reference": reference,
            "item": j, "start": s}


class OriginalDataset(torch.utils.data.Dataset):
    """The seed's original ``__getitem__``: load the clip, run both encoders, every sample."""

    def __init__(self, clips: Clips, audio_encoder: AudioEncoder, motion_encoder: MotionEncoder):
        self.clips, self.audio_encoder, self.motion_encoder = clips, audio_encoder, motion_encoder

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        j, s, L = int(self.clips.item[idx]), int(self.clips.start[idx]), self.clips.window
        video_path, audio_path = self.clips.files[j]
        video_frames = torch.from_numpy(read_video(video_path)[0])  # 1. load the video and the audio
        audio = torch.from_numpy(read_audio(audio_path)[0])
        with torch.no_grad():
            w_audio = self.audio_encoder.inference(audio, seq_len=len(video_frames))[s : s + L]  # 2. audio encoder
            motion_cur = self.motion_encoder.encode(video_frames[s : s + L])  # 3. motion latents
            motion_prev = self.motion_encoder.encode(video_frames[s - L : s])
            reference = self.motion_encoder.encode(video_frames[:1])[0]  # 4. reference motion
        return sample(j, s, L, w_audio, motion_cur, motion_prev, reference)


class OptimisedDataset(torch.utils.data.Dataset):
    """The seed's optimised dataset: preprocess everything into a list of dicts once, slice in ``__getitem__``."""

    def __init__(self, clips: Clips, audio_encoder: AudioEncoder, motion_encoder: MotionEncoder, cache_file: Path,
                 force_preprocess: bool = False):
        self.clips, self.audio_encoder, self.motion_encoder = clips, audio_encoder, motion_encoder
        if cache_file.exists() and not force_preprocess:  # the seed: "data changed? pass --force_preprocess"
            log.info("optimised: loading the preprocessed clips from %s (not checked against the data)", cache_file)
            self.preprocessed_data = torch.load(cache_file, weights_only=True)
        else:
            self.preprocessed_data = self._preprocess_all_data()
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.preprocessed_data, cache_file)

    def _preprocess_all_data(self) -> list[dict[str, torch.Tensor]]:
        out = []
        with torch.no_grad():
            for video_path, audio_path in self.clips.files:
                frames = torch.from_numpy(read_video(video_path)[0])
                audio = torch.from_numpy(read_audio(audio_path)[0])
                motion = self.motion_encoder.encode(frames)  # _extract_motion_latent_batch: the clip at once
                out.append({"video_frames": frames, "w_audio": self.audio_encoder.inference(audio, len(frames)),
                            "motion_latents": motion, "reference_motion": motion[0]})
        return out

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        j, s, L = int(self.clips.item[idx]), int(self.clips.start[idx]), self.clips.window
        d = self.preprocessed_data[j]  # only tensor slicing, no model
        return sample(j, s, L, d["w_audio"][s : s + L], d["motion_latents"][s : s + L],
                      d["motion_latents"][s - L : s], d["reference_motion"])


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # the seed's workers each run the encoders; N workers share the cores


class SeedBatches:
    """Epochs of a DataLoader over one of the seed's datasets (shuffled, seeded, the seed's workers)."""

    def __init__(self, dataset: torch.utils.data.Dataset, cfg: Config, device: str):
        t = cfg.train
        self.dataset, self.device = dataset, device
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=t.batch_size, shuffle=True, drop_last=True, num_workers=t.num_workers,
            persistent_workers=t.num_workers > 0, pin_memory=device.startswith("cuda"),
            generator=torch.Generator().manual_seed(t.seed), worker_init_fn=_one_thread)

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
