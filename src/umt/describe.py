"""What ``umt info`` says about a checkpoint without building its model: torch and the config only, so that it
answers in about the time of ``import torch``."""

from __future__ import annotations

from pathlib import Path

from umt.checkpoints import Checkpoint, key_groups
from umt.models.config import ModelConfig

HEAD_NORM = ("head.fc_norm.weight", "head.fc_norm.bias")
HEAD_FC = ("head.fc.weight", "head.fc.bias")
"""The classifier head's tensors (``ClassificationHead``: ``fc_norm``, and ``fc`` when there are classes)."""


def load_plan(checkpoint: Checkpoint, config: ModelConfig) -> tuple[list[str], list[str]]:
    """What ``umt.checkpoints.load_weights`` reports when ``checkpoint`` loads into the ``VideoClassifier`` of
    ``config``: the keys dropped by design and the model keys initialised fresh (both sorted).

    Args:
        checkpoint: the file as ``read_checkpoint`` maps it.
        config: the model the file describes (``umt.cli_models.model_for``).
    """
    dropped = list(checkpoint.dropped)
    if "encoder.pos_embed" in checkpoint.state_dict and config.pos_embed != "checkpoint":
        dropped.append("pos_embed")  # the model computes its own table
    head = HEAD_NORM + (HEAD_FC if config.num_classes else ())
    return sorted(dropped), sorted(key for key in head if key not in checkpoint.state_dict)


def describe(path: Path, checkpoint: Checkpoint, name: str, config: ModelConfig) -> list[tuple[str, str]]:
    """The rows ``umt info`` prints: file, family, model, input, classes, parameters, what loading drops and
    initialises.

    Args:
        path: the file, as given.
        checkpoint: the file as ``read_checkpoint`` maps it.
        name: the model name that fits it.
        config: that model's config.
    """
    dropped, initialised = load_plan(checkpoint, config)
    params = sum(t.numel() for t in checkpoint.state_dict.values() if t.is_floating_point())
    return [
        ("file", str(path)),
        ("family", checkpoint.family),
        ("model", f"{name}: embed_dim {config.embed_dim}, depth {config.depth}, heads {config.num_heads}"),
        ("input", f"{config.num_frames} frames x {config.img_size}px, position table '{config.pos_embed}'"),
        ("classes", str(config.num_classes) if config.num_classes else "none (pooled features)"),
        ("parameters", f"{params / 1e6:.1f} M loaded"),
        ("dropped by design", f"{len(dropped)} keys {key_groups(dropped)}"),
        ("initialised fresh", f"{len(initialised)} keys {key_groups(initialised)}"),
    ]
