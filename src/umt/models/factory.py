"""``create_model``: build a named UMT model, optionally from an official or converted checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from umt import zoo
from umt.checkpoints import Checkpoint, CheckpointError, HeadMode, load_weights, read_checkpoint
from umt.models.classifier import VideoClassifier
from umt.models.config import get_config

VIDEO_FAMILIES = ("pretrain", "finetune", "mm_model", "mm_retrieval", "mm_qa")
"""Zoo families whose video encoder (and classifier) ``create_model`` loads; stage-2 files give their encoder."""


def create_model(
    name: str,
    checkpoint: str | Path | Mapping[str, Any] | Checkpoint | None = None,
    *,
    pretrained: bool | str | None = None,
    head_mode: HeadMode = "load",
    trust_pickle: bool = False,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> VideoClassifier:
    """Build ``name`` (``umt_b16``, ``umt_l16``) with ``overrides``, and load ``checkpoint`` if given.

    A checkpoint sets what its layout implies (``final_norm`` and the position-table policy of stage-2
    encoders, ``num_classes`` of a classifier, the whole config of a ``umt convert`` file); explicit
    ``overrides`` win. Loading is strict; what is dropped by design is reported in one log line.

    Args:
        checkpoint: a file path, a loaded checkpoint object, or a ``Checkpoint`` from ``read_checkpoint``.
        pretrained: a model-zoo name (``umt.zoo``; e.g. ``b16_ptk710_ftk710_ftk400_f8_res224``) or a local path,
            fetched through the Hugging Face cache; its frames and resolution become defaults. ``True``: the
            zoo's K400 classifier of ``name``. Not together with ``checkpoint``.
        head_mode: ``load`` the file's classifier, ``reset`` it, or ``k710_to_k400`` (first 400 rows).
        trust_pickle: allow files that hold Python objects besides tensors (only for trusted sources).
        device: where to build the model (``"meta"`` builds without memory, for inspection).

    Returns:
        ``VideoClassifier``: ``forward(video [B, 3, T, H, W]) -> logits [B, num_classes]``.

    Raises:
        KeyError: unknown name. TypeError: unknown override. ValueError: invalid sizes.
        CheckpointError: unreadable file or a checkpoint that does not fit (``umt.zoo.ZooError``, a subclass,
            for a zoo name that is unknown, of another model, or not available).
    """
    zoo_defaults: dict[str, Any] = {}
    if pretrained not in (None, False):
        if checkpoint is not None:
            raise ValueError("give either checkpoint or pretrained, not both")
        checkpoint, zoo_defaults = zoo.fetch(name, pretrained, VIDEO_FAMILIES)
    placement = torch.device(device) if device is not None else nullcontext()
    if checkpoint is None:
        with placement:
            return VideoClassifier(get_config(name, **overrides))
    loaded = checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint, trust_pickle)
    if loaded.name is not None and loaded.name != name:
        raise CheckpointError(f"the file holds a {loaded.name} model, not {name}")
    config = get_config(name, **{**zoo_defaults, **loaded.config, **overrides})
    with placement:
        model = VideoClassifier(config)
    load_weights(model, loaded, head_mode)
    return model


def classifier_from_module(module: torch.nn.Module, head: str = "classification") -> VideoClassifier:
    """A standalone ``VideoClassifier`` with the encoder and the ``head`` of a ``UMTModule`` (same weights)."""
    classifier_head = module.heads[head]
    config = module.encoder.config.replace(
        num_classes=classifier_head.num_classes, norm_eps=classifier_head.fc_norm.eps,
        head_pool="frames" if classifier_head.pool_frames else "mean")
    model = VideoClassifier(config)
    state = {f"encoder.{k}": v for k, v in module.encoder.state_dict().items()}
    state |= {f"head.{k}": v for k, v in classifier_head.state_dict().items()}
    model.load_state_dict(state, strict=True)
    return model
