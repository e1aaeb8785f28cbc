"""Official AVA detector files (``*_ftava_*``), ``UMTModule`` checkpoints of detection runs, and K710 classifiers
as detector initialisations.

- ``ava``: the official detector (``patch_embed``, ``blocks``, ``norm``, ``head`` [80, C]; no position table):
  every key is mapped, nothing is dropped or initialised.
- ``finetune``: an official classifier (``fc_norm``, ``head`` [n_cls, C]) initialising a detector as the official
  AVA fine-tuning does: ``head.*`` dropped, ``fc_norm.*`` unused (dropped), a stored ``pos_embed`` dropped (the
  detector resizes its own table), the final ``norm`` and the detector head initialised fresh; all reported.
- ``module``: a ``UMTModule`` Lightning checkpoint with a ``detection`` head (e.g. ``last.ckpt`` of a
  ``recipes/detection`` fit): the encoder, the head's final norm and ROI classifier; the sizes and the head's
  ``test_extension`` from its hyper-parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from umt.checkpoints import (
    Checkpoint,
    CheckpointError,
    LoadReport,
    _is_module_checkpoint,
    _torch_load,
    _unwrap,
    key_groups,
)
from umt.detection.model import ActionDetector, detector_config
from umt.options import EncoderConfig

logger = logging.getLogger("umt")

FRESH_FROM_CLASSIFIER = ("encoder.norm.", "head.fc.")
"""Detector keys a classifier file does not hold: the final norm and the ROI head."""
SIZE_FIELDS = ("embed_dim", "depth", "num_heads", "patch_size", "tubelet_size", "mlp_ratio", "num_frames", "img_size")
"""Encoder options a module checkpoint's hyper-parameters give the detector."""


def _is_detection_head(entry: Mapping[str, Any]) -> bool:
    return str(entry.get("class_path", "")).split(".")[-1] in ("detection", "DetectionHead")


def _module_detector(obj: Mapping[str, Any], origin: str) -> Checkpoint:
    """A ``UMTModule`` checkpoint of a detection run as ``ActionDetector`` keys (``name``: the encoder size).

    Raises:
        CheckpointError: the module has no detection head.
    """
    heads = obj.get("umt_heads") or {}
    names = [name for name, entry in heads.items() if _is_detection_head(entry)]
    if not names:
        raise CheckpointError(f"{origin} is a UMTModule checkpoint without a detection head (heads: "
                              f"{', '.join(heads) or 'none recorded'}), not an AVA detector: umt detect needs the "
                              "checkpoint of a detection run (recipes/detection) or an official *_ftava_* file")
    prefix = f"heads.{names[0]}."
    mapped: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in obj["state_dict"].items():
        if key.startswith("encoder."):
            mapped[key] = value
        elif key.startswith(prefix + "norm."):
            mapped["encoder." + key.removeprefix(prefix)] = value
        elif key.startswith(prefix + "head."):
            mapped[key.removeprefix(prefix)] = value
        else:
            dropped.append(key)
    hyper = obj.get("hyper_parameters", {})
    known = {f for f in EncoderConfig.__dataclass_fields__}
    encoder = EncoderConfig(**{k: v for k, v in (hyper.get("encoder") or {}).items() if k in known})
    model = encoder.model_config()
    config: dict[str, Any] = {field: getattr(model, field) for field in SIZE_FIELDS}
    if "head.fc.weight" in mapped:
        config["num_classes"] = mapped["head.fc.weight"].shape[0]
    options = next((dict(h.get("init_args") or {}) for h in hyper.get("heads") or [] if isinstance(h, Mapping)
                    and _is_detection_head(h)), {})
    if "test_extension" in options:
        config["test_extension"] = tuple(options["test_extension"])
    return Checkpoint("module", mapped, dropped, config, name=encoder.size)


def _family(state: dict[str, Tensor], origin: str) -> str:
    keys = set(state)
    if "patch_embed.proj.weight" in keys and "norm.weight" in keys and "fc_norm.weight" not in keys:
        return "ava"
    if "patch_embed.proj.weight" in keys and "fc_norm.weight" in keys:
        return "finetune"
    if any(k.startswith("text_decoder.") for k in keys):
        kind = "a video-QA model (text_decoder.*)"
    elif any(k.startswith(("vision_encoder.", "encoder.")) for k in keys):
        kind = "a pre-training / video-text model (encoder.* or vision_encoder.*)"
    else:
        kind = f"an unrecognised layout (first keys: {', '.join(sorted(keys)[:4])})"
    raise CheckpointError(f"{origin} is {kind}, not an AVA detector (patch_embed.*, blocks.*, norm.*, head.*) or an "
                          "official classifier (fc_norm.*, head.*) to initialise one from")


def read_detector_checkpoint(source: str | Path | Mapping[str, Any], trust_pickle: bool = False) -> Checkpoint:
    """Read an official AVA detector or classifier file (``model`` / ``module`` / bare), or a ``UMTModule``
    checkpoint of a detection run, mapped to ``ActionDetector`` keys.

    Raises:
        CheckpointError: unreadable file, or a file that is neither a detector nor a classifier.
    """
    origin = str(source) if isinstance(source, (str, Path)) else "checkpoint object"
    obj = _torch_load(Path(source), trust_pickle) if isinstance(source, (str, Path)) else source
    if _is_module_checkpoint(obj):
        return _module_detector(obj, origin)
    state, native = _unwrap(obj, origin)
    if native is not None:
        raise CheckpointError(f"{origin} is a `umt convert` file of a classifier, not an AVA detector")
    family = _family(state, origin)
    mapped: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        if key == "pos_embed" or (family == "finetune" and key.startswith(("fc_norm.", "head."))):
            dropped.append(key)
        elif key.startswith("head."):
            mapped["head.fc." + key.removeprefix("head.")] = value
        else:
            mapped["encoder." + key] = value
    hints = {"num_classes": state["head.weight"].shape[0]} if family == "ava" else {}
    return Checkpoint(family, mapped, dropped, hints)


def load_detector_weights(model: ActionDetector, checkpoint: Checkpoint) -> LoadReport:
    """Load ``checkpoint`` into ``model`` strictly (only a classifier's missing final norm and head are
    initialised fresh) and log what was dropped and initialised.

    Raises:
        CheckpointError: missing or unexpected keys, or shape mismatches (naming keys and both shapes).
    """
    state = dict(checkpoint.state_dict)
    target = model.state_dict()
    fresh_allowed = {k for k in target if k.startswith(FRESH_FROM_CLASSIFIER)} if checkpoint.family == "finetune" \
        else set()
    missing = sorted(set(target) - set(state) - fresh_allowed)
    unexpected = sorted(set(state) - set(target))
    mismatched = [(k, list(state[k].shape), list(target[k].shape))
                  for k in target if k in state and state[k].shape != target[k].shape]
    if missing or unexpected or mismatched:
        config = model.config
        lines = [f"{checkpoint.family} checkpoint does not fit the detector (embed_dim {config.embed_dim}, depth "
                 f"{config.depth}, {config.num_classes} classes)"]
        lines += [f"  {key}: checkpoint {have} vs model {want}" for key, have, want in mismatched[:8]]
        if missing:
            lines.append(f"  missing from the checkpoint: {key_groups(missing)} ({len(missing)} keys)")
        if unexpected:
            lines.append(f"  not in the model: {key_groups(unexpected)} ({len(unexpected)} keys)")
        raise CheckpointError("\n".join(lines))
    initialised = sorted(set(target) - set(state))
    model.load_state_dict({**{k: target[k] for k in initialised}, **state}, strict=True,
                          assign=any(t.is_meta for t in target.values()))
    report = LoadReport(checkpoint.family, sorted(checkpoint.dropped), initialised)
    logger.info(report.summary())
    return report


def create_detector(
    name: str = "umt_b16",
    checkpoint: str | Path | Mapping[str, Any] | Checkpoint | None = None,
    *,
    trust_pickle: bool = False,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> ActionDetector:
    """Build the AVA detector of size ``name`` (``umt_b16``, ``umt_l16``) and load ``checkpoint`` strictly:
    an official AVA file (its head sets ``num_classes``), a ``UMTModule`` detection checkpoint (its sizes and
    ``test_extension`` too) or a classifier (the official initialisation).

    Args:
        checkpoint: a path, a loaded object, or a ``Checkpoint`` from ``read_detector_checkpoint``.
        trust_pickle: allow files holding Python objects besides tensors (trusted sources only).
        device: where to build (``"meta"`` builds without memory).
        overrides: ``ModelConfig`` fields (e.g. ``drop_path_rate``); they win over the file's implications.

    Raises:
        CheckpointError: unreadable file or a file that does not fit.
    """
    loaded = None
    if checkpoint is not None:
        loaded = checkpoint if isinstance(checkpoint, Checkpoint) else read_detector_checkpoint(checkpoint,
                                                                                              trust_pickle)
    options = {**(loaded.config if loaded else {}), **overrides}
    extension = {"test_extension": options.pop("test_extension")} if "test_extension" in options else {}
    config = detector_config(name, **options)
    with torch.device(device) if device is not None else nullcontext():
        model = ActionDetector(config, **extension)
    if loaded is not None:
        load_detector_weights(model, loaded)
    return model
