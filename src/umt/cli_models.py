"""What the ``umt`` commands share once they run: the model of a checkpoint, the built-in clip (torch imported;
the model code only where a model is built)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from umt.checkpoints import Checkpoint, read_checkpoint
from umt.errors import UsageError, check_positive
from umt.models.config import MODEL_CONFIGS, get_config

if TYPE_CHECKING:
    from umt.models.classifier import VideoClassifier


def model_for(checkpoint: Checkpoint, num_frames: int | None, img_size: int | None,
               num_heads: int | None) -> tuple[str, dict[str, Any]]:
    """The model name and options that fit ``checkpoint``: a named size when embed_dim and depth match
    one (else ``umt_b16`` resized, heads from ``num_heads`` or a head width of 64), frames from its table."""
    overrides: dict[str, Any] = {k: v for k, v in {"img_size": img_size, "num_heads": num_heads}.items() if v}
    name = checkpoint.name or next((n for n, c in MODEL_CONFIGS.items()
                                    if (c.embed_dim, c.depth) == (checkpoint.embed_dim, checkpoint.depth)), None)
    if name is None:
        name = "umt_b16"
        patch = checkpoint.state_dict["encoder.patch_embed.proj.weight"]
        fc1 = checkpoint.state_dict["encoder.blocks.0.mlp.fc1.weight"]
        overrides = {"embed_dim": checkpoint.embed_dim, "depth": checkpoint.depth,
                     "num_heads": max(checkpoint.embed_dim // 64, 1), "patch_size": patch.shape[-1],
                     "tubelet_size": patch.shape[2], "mlp_ratio": fc1.shape[0] / fc1.shape[1]} | overrides
    config = get_config(name, **{**checkpoint.config, **overrides})
    table = checkpoint.state_dict.get("encoder.pos_embed")
    if num_frames is not None:
        overrides["num_frames"] = num_frames
    elif table is not None and checkpoint.family != "umt":
        overrides["num_frames"] = table.shape[1] // (config.grid[0] * config.grid[1]) * config.tubelet_size
    return name, overrides


def load_model(checkpoint: Path | None, model: str, num_frames: int | None, num_heads: int | None,
                trust_pickle: bool) -> tuple[VideoClassifier, str, list[str] | None]:
    """The model of ``checkpoint`` (random ``model`` weights, seed 0, without one), its name, and the class
    names stored in the file (converted files only). ``num_frames`` None keeps the file's (or 8)."""
    from umt.models.factory import create_model  # the model code (timm) only for commands that run a model

    check_positive(num_frames=num_frames, num_heads=num_heads)
    if checkpoint is None and model not in MODEL_CONFIGS:
        raise UsageError(f"--model {model}: unknown model; choose one of {', '.join(MODEL_CONFIGS)}")
    if checkpoint is None:
        torch.manual_seed(0)
        return create_model(model, **({} if num_frames is None else {"num_frames": num_frames})), model, None
    loaded = read_checkpoint(checkpoint, trust_pickle)
    name, overrides = model_for(loaded, num_frames, None, num_heads)
    return create_model(name, loaded, **overrides), name, loaded.labels


def synthetic_clip(num_frames: int, size: int = 256) -> torch.Tensor:
    """uint8 ``[T, size, size, 3]``: a bright square moving left to right over a colour gradient."""
    ramp = torch.linspace(0, 255, size)
    frames = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                          torch.full((size, size), 64.0)], -1).repeat(num_frames, 1, 1, 1)
    side = size // 4
    for t in range(num_frames):
        left = round(t * (size - side) / max(num_frames - 1, 1))
        top = round(size / 2 - side / 2 + side * math.sin(t))
        frames[t, top : top + side, left : left + side] = 255.0
    return frames.to(torch.uint8)


def video_text_hparams(checkpoint: Path) -> dict[str, Any]:
    """``tokenizer`` and ``max_length`` of a ``UMTModule`` checkpoint's video-text head (empty for other files)."""
    if checkpoint.suffix != ".ckpt":
        return {}
    heads = torch.load(checkpoint, map_location="cpu", weights_only=True).get("umt_heads", {})
    return dict(heads.get("video_text", {}).get("options", {}))
