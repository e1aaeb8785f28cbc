"""Text-to-video search over a folder with a stage-2 model; media features cached on disk per file and checkpoint."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from umt.data.decoding import probe, read_frames
from umt.data.samplers import interval_indices
from umt.data.text import load_tokenizer, tokenize
from umt.data.transforms import stage2_eval_transform
from umt.losses import video_text_similarity
from umt.models.video_text import VideoTextModel
from umt.progress import progress_bar

logger = logging.getLogger("umt")

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
"""File names searched."""


@dataclass
class Hit:
    """One search result: the file, its contrastive score and, after re-ranking, its ITM match logit."""

    path: Path
    itc: float
    itm: float | None = None


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/umt/search`` (``~/.cache/umt/search``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "umt" / "search"


def media_files(folder: Path) -> list[Path]:
    """Videos under ``folder`` (recursively), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def cache_key(path: Path, checkpoint: Path, num_frames: int, img_size: int) -> str:
    """Hex digest of the media file (absolute path, mtime, size), the checkpoint (path, mtime) and the input size."""
    media, weights = path.resolve().stat(), checkpoint.resolve().stat()
    parts = (path.resolve(), media.st_mtime_ns, media.st_size, checkpoint.resolve(), weights.st_mtime_ns, num_frames,
             img_size)
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()


class MediaIndex:
    """Media features of one model, computed once per file and kept in ``cache`` (one ``.pt`` file per media).

    Args:
        model: the stage-2 model (eval mode).
        checkpoint: its file (part of the cache key).
        cache: folder of cached features.
    """

    def __init__(self, model: VideoTextModel, checkpoint: Path, cache: Path) -> None:
        self.model, self.checkpoint, self.cache = model, checkpoint, cache
        config = model.config.vision
        self.num_frames, self.img_size = config.num_frames, config.img_size
        self.transform = stage2_eval_transform(config.img_size)
        self.computed = 0

    def features(self, path: Path) -> tuple[Tensor, Tensor]:
        """Tokens ``[N, C]`` and per-frame embeddings ``[T, E]`` of one file (from the cache when present)."""
        entry = self.cache / f"{cache_key(path, self.checkpoint, self.num_frames, self.img_size)}.pt"
        if entry.is_file():
            stored = torch.load(entry, weights_only=True)
            return stored["tokens"].float(), stored["embeddings"]
        clip = read_frames(path, interval_indices(probe(path).num_frames, self.num_frames, "middle"))
        with torch.no_grad():
            tokens, pooled = self.model.encode_video(self.transform(clip)[None], per_frame=True)
            embeddings = self.model.video_embedding(pooled)
        self.cache.mkdir(parents=True, exist_ok=True)
        torch.save({"tokens": tokens[0].half(), "embeddings": embeddings[0]}, entry)
        self.computed += 1
        return tokens[0], embeddings[0]


def search_media(model: VideoTextModel, index: MediaIndex, files: list[Path], query: str, tokenizer_name: str,
                 max_length: int = 32, top: int = 5, rerank: bool = False, progress: bool = True) -> list[Hit]:
    """Rank ``files`` for ``query`` by contrastive similarity (mean over frames of cosine); with ``rerank`` the
    ``top`` best are re-ordered by the ITM match logit, as in the official retrieval evaluation; ``progress``
    draws a bar while the files are indexed (read from the cache or encoded)."""
    features = [index.features(path) for path in progress_bar(files, desc="indexing", unit="video", enabled=progress)]
    ids, mask = tokenize(load_tokenizer(tokenizer_name), [query], max_length)
    with torch.no_grad():
        text = model.encode_text(ids, mask)
        text_embedding = model.text_embedding(text)
        scores = torch.cat([video_text_similarity(e[None], text_embedding)[:, 0] for _, e in features])
        best = scores.topk(min(top, len(files))).indices.tolist()
        hits = [Hit(files[i], float(scores[i])) for i in best]
        if rerank:
            for hit, i in zip(hits, best, strict=True):
                hit.itm = float(model.itm_logits(features[i][0][None], text, mask)[0, 1])
            hits.sort(key=lambda hit: -hit.itm)
    return hits
