"""Pooled features of every video of a list, batched and resumable: a partial ``.npy`` plus a progress file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from umt.data.annotations import read_video_list
from umt.data.decoding import VideoError
from umt.models.classifier import VideoClassifier
from umt.predict import eval_view
from umt.progress import progress_bar

logger = logging.getLogger("umt")


@dataclass
class EmbedResult:
    """What ``embed_videos`` wrote.

    Attributes:
        features: the ``.npy`` file, float32 ``[num_videos, C]`` in list order; rows of unreadable videos are NaN.
        ids: the text file naming each row's video (its path as written in the list), one per line.
        failed: unreadable videos (id -> reason), over all runs that built this file.
        computed: videos embedded by this call (fewer than the list after a resume).
    """

    features: Path
    ids: Path
    failed: dict[str, str] = field(default_factory=dict)
    computed: int = 0


def output_paths(out: str | Path) -> tuple[Path, Path, Path, Path]:
    """``(features, ids, partial features, progress)`` files of output ``out`` (e.g. ``feats.npy``,
    ``feats.ids.txt``, ``feats.npy.partial``, ``feats.npy.progress.json``)."""
    out = Path(out)
    return out, out.with_suffix(".ids.txt"), out.with_name(out.name + ".partial"), out.with_name(
        out.name + ".progress.json")


class _Views(Dataset):
    """``{"video": [3, T, S, S] (zeros when unreadable), "error": "" or the reason}`` per listed video."""

    def __init__(self, paths: list[Path], num_frames: int, size: int) -> None:
        self.paths, self.num_frames, self.size = paths, num_frames, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return {"video": eval_view(self.paths[index], self.num_frames, self.size), "error": ""}
        except (VideoError, ValueError, OSError) as error:
            return {"video": torch.zeros(3, self.num_frames, self.size, self.size), "error": str(error) or "unreadable"}


def model_fingerprint(model: VideoClassifier) -> str:
    """SHA-256 of the model's config and weights: a resumed run must use the same model."""
    digest = hashlib.sha256(repr(model.config).encode())
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _write_json(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` to ``path`` atomically (temporary file, then rename)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content))
    os.replace(temporary, path)


def embed_videos(annotation: str | Path, out: str | Path, model: VideoClassifier, batch_size: int = 8,
                 prefix: str | Path | None = None, num_workers: int = 0, show_progress: bool = True) -> EmbedResult:
    """Write the pooled features (``model.forward_features``, the single test view) of every video of a list.

    After each batch the finished rows are flushed to ``OUT.partial`` (an ``.npy`` file) and the row count to
    ``OUT.progress.json`` (atomically); a call with the same list and model continues after the last finished
    batch, and a different list or model is refused. When all rows are done the partial file becomes ``OUT``,
    the ids go to ``OUT`` with suffix ``.ids.txt``, and the progress file is removed. Unreadable videos are
    logged and their rows are NaN.

    Args:
        annotation: video list (``path<sep>label`` per line, see ``umt.data.annotations``).
        out: features file to write (``.npy``).
        model: encoder with its pooled head; its config sets frames and size.
        batch_size: videos per forward pass.
        prefix: folder that relative paths start from (default: the list's folder).
        num_workers: decoding processes (0: in this process).
        show_progress: draw a progress bar.

    Raises:
        ValueError: a progress file from another list or model, or an empty list.
    """
    features_path, ids_path, partial_path, progress_path = output_paths(out)
    records = read_video_list(annotation, prefix)
    root = Path(prefix) if prefix is not None else Path(annotation).parent
    ids = [str(record.path.relative_to(root)) if record.path.is_relative_to(root) else str(record.path)
           for record in records]
    config = model.config
    dim = config.embed_dim
    identity = {"ids": hashlib.sha256("\n".join(ids).encode()).hexdigest(), "root": str(root.resolve()),
                "model": model_fingerprint(model), "shape": [len(ids), dim]}
    progress: dict[str, Any] = {"done": 0, "failed": {}}
    if progress_path.is_file() and partial_path.is_file():
        progress = json.loads(progress_path.read_text())
        if progress.get("identity") != identity:
            raise ValueError(f"{progress_path} belongs to another video list or model; delete it and "
                             f"{partial_path} to start over")
        rows = np.lib.format.open_memmap(partial_path, mode="r+")
    else:
        features_path.parent.mkdir(parents=True, exist_ok=True)
        rows = np.lib.format.open_memmap(partial_path, mode="w+", dtype=np.float32, shape=(len(ids), dim))
    done, failed = int(progress["done"]), dict(progress["failed"])
    dataset = Subset(_Views([r.path for r in records], config.num_frames, config.img_size),
                                      range(done, len(ids)))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    device = next(model.parameters()).device
    model.eval()
    start = done
    with progress_bar(total=len(ids), initial=done, desc="embedding", unit="video", enabled=show_progress) as bar:
        for batch in loader:
            count = len(batch["error"])
            good = [i for i, error in enumerate(batch["error"]) if not error]
            chunk = np.full((count, dim), np.nan, dtype=np.float32)
            if good:
                with torch.inference_mode():
                    chunk[good] = model.forward_features(batch["video"][good].to(device)).float().cpu().numpy()
            for i, error in enumerate(batch["error"]):
                if error:
                    failed[ids[done + i]] = error
                    logger.warning("skipped %s (row of NaN): %s", ids[done + i], error)
            rows[done : done + count] = chunk
            rows.flush()
            done += count
            _write_json(progress_path, {"identity": identity, "done": done, "failed": failed})
            bar.update(count)
    del rows
    ids_temporary = ids_path.with_name(ids_path.name + ".tmp")
    ids_temporary.write_text("".join(f"{video_id}\n" for video_id in ids))
    os.replace(ids_temporary, ids_path)
    os.replace(partial_path, features_path)
    progress_path.unlink()
    return EmbedResult(features_path, ids_path, failed, done - start)
