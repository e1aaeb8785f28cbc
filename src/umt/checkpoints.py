"""Read official UMT checkpoints (and this library's own files), map them onto ``VideoClassifier`` (or
``VideoTextModel``) keys, and load them strictly: nothing missing, nothing unexpected, shapes equal, or one clear error.

Layouts understood (SPEC.md §5.3), each wrapped in ``model``, ``module`` or bare:

- ``finetune``: single-modality classifiers (``patch_embed``, ``blocks``, ``fc_norm``, ``head``, and
  ``pos_embed`` when it was interpolated: 16 frames, 384 pixels).
- ``pretrain``: stage-1 students (``encoder.*``, ``clip_decoder.*``).
- ``mm_vision``: stage-2 vision encoders (``encoder.*``, ``clip_decoder.*``, ``pool_norm``), bare or as
  the ``vision_encoder.`` part of a whole stage-2 / retrieval / QA model.
- ``umt``: files written by ``umt convert`` (config + state dict).

Whole stage-2 models (``read_video_text_checkpoint``, mapped to ``VideoTextModel`` keys):

- ``mm_model``: stage-2 pre-training (``vision_encoder.*``, ``text_encoder.bert.*``, ``text_encoder.cls.*``,
  projections, ``itm_head``, ``temp``, and the ``clip_teacher.*`` it was trained with).
- ``mm_retrieval``: retrieval / multiple-choice fine-tuned models (``text_encoder.*`` without ``bert.``, no
  MLM head: it is initialised fresh and reported).
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

logger = logging.getLogger("umt")

NATIVE_FORMAT = "unmasked-teacher"
NATIVE_VERSION = 1

HeadMode = Literal["load", "reset", "k710_to_k400"]
"""What to do with a checkpoint's classifier: load it, start a fresh one, or keep the first 400 of
710 rows (K710 label order starts with the K400 classes in K400 order, as the official code assumes)."""

DROPPED_BY_FAMILY: dict[str, tuple[str, ...]] = {
    "pretrain": ("encoder.norm.", "clip_decoder."),
    "mm_vision": ("clip_decoder.", "clip_teacher.", "text_encoder.", "text_decoder.", "vision_proj.",
                  "text_proj.", "itm_head.", "temp"),
}
"""Checkpoint key prefixes (or whole names) each family drops by design: the stage-1 final norm (unused
with mean pooling, as in the official fine-tuning), alignment heads and the CLIP teacher (pre-training
only), and the text side of stage-2 models (not part of the video model)."""

LAYOUTS = (
    "official classifier (patch_embed.*, blocks.*, fc_norm.*, head.*), official stage-1 student "
    "(encoder.*, clip_decoder.*), official stage-2 vision encoder ([vision_encoder.]encoder.*, pool_norm.*), "
    "or a file written by `umt convert`"
)


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model."""


@dataclass
class Checkpoint:
    """A checkpoint mapped to this library's keys (``VideoClassifier``, or ``VideoTextModel`` for ``mm_*``).

    Attributes:
        family: ``finetune``, ``pretrain``, ``mm_vision``, ``umt``, ``mm_model`` or ``mm_retrieval``.
        state_dict: tensors under this library's key names.
        dropped: checkpoint keys left out by design (see ``DROPPED_BY_FAMILY``).
        config: model options the file implies (e.g. ``final_norm``, ``num_classes``); user overrides win.
        name: model name stored in a ``umt`` file, else None.
        labels: class names stored in a ``umt`` file (one per head row), else None.
    """

    family: str
    state_dict: dict[str, Tensor]
    dropped: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    labels: list[str] | None = None

    @property
    def embed_dim(self) -> int:
        """Token width of the encoder in the file."""
        return self.state_dict["encoder.patch_embed.proj.weight"].shape[0]

    @property
    def depth(self) -> int:
        """Number of blocks of the encoder in the file."""
        indices = {int(m.group(1)) for k in self.state_dict if (m := re.match(r"encoder\.blocks\.(\d+)\.", k))}
        return max(indices) + 1 if indices else 0

    @property
    def num_classes(self) -> int | None:
        """Rows of the classifier in the file, or None without one."""
        weight = self.state_dict.get("head.fc.weight")
        return None if weight is None else weight.shape[0]


@dataclass
class LoadReport:
    """What a load did: the family read, checkpoint keys dropped by design, model keys freshly initialised."""

    family: str
    dropped: list[str]
    initialised: list[str]

    def summary(self) -> str:
        """One log line."""
        return (f"loaded {self.family} checkpoint: dropped {len(self.dropped)} keys by design "
                f"{key_groups(self.dropped)}; initialised fresh {key_groups(self.initialised)}")


_CONTAINERS = {"encoder", "head", "vision_encoder", "text_encoder", "text_decoder"}


def key_groups(keys: list[str]) -> str:
    """Compact listing of key groups, e.g. ``[clip_decoder.*, encoder.norm.*]``."""
    groups = set()
    for key in keys:
        parts = key.split(".")
        if len(parts) == 1:
            groups.add(key)
        else:
            depth = 2 if parts[0] in _CONTAINERS and len(parts) > 2 and not parts[1].isdigit() else 1
            groups.add(".".join(parts[:depth]) + ".*")
    return "[" + ", ".join(sorted(groups)) + "]"


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    """``torch.load`` on CPU; only tensors and plain containers unless ``trust_pickle``."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is truncated or not a PyTorch checkpoint (no zip archive found)")
    try:
        if trust_pickle:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error):
            raise CheckpointError(
                f"{path} contains Python objects besides tensors; if you trust its source, load it with "
                f"trust_pickle=True (umt CLI: --trust_pickle true). Details: {str(error).splitlines()[0]}"
            ) from error
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {error}") from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(
            f"{path} is truncated or not a PyTorch checkpoint ({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from error


def _unwrap(obj: Any, origin: str) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """The state dict under ``model`` / ``module`` / bare, and the native config if it is a ``umt`` file."""
    if isinstance(obj, Mapping) and obj.get("format") == NATIVE_FORMAT:
        if obj.get("version") != NATIVE_VERSION:
            raise CheckpointError(f"{origin}: unsupported {NATIVE_FORMAT} file version {obj.get('version')}")
        return dict(obj["state_dict"]), {"config": obj["config"], "name": obj.get("name"), "labels": obj.get("labels")}
    if isinstance(obj, Mapping):
        for key in ("model", "module"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{origin} holds no state dict (looked under 'model', 'module' and the top level)")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, None


def _detect_family(state: dict[str, Tensor], origin: str) -> str:
    keys = set(state)
    if any(k.startswith("vision_encoder.") for k in keys) or "pool_norm.weight" in keys:
        return "mm_vision"
    if "encoder.patch_embed.proj.weight" in keys:
        return "pretrain"
    if "patch_embed.proj.weight" in keys and "fc_norm.weight" in keys:
        return "finetune"
    hint = ""
    if "patch_embed.proj.weight" in keys and "norm.weight" in keys:
        hint = " This looks like an AVA detector (final norm, ROI head): load it with umt.detection.create_detector."
    sample = ", ".join(sorted(keys)[:6])
    raise CheckpointError(f"{origin}: unrecognised layout (first keys: {sample}).{hint} Understood: {LAYOUTS}")


def _map_finetune(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str], dict[str, Any]]:
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("fc_norm."):
            mapped["head." + key] = value
        elif key.startswith("head."):
            mapped["head.fc." + key.removeprefix("head.")] = value
        else:
            mapped["encoder." + key] = value
    head = state.get("head.weight")
    hints: dict[str, Any] = {"final_norm": False, "num_classes": 0 if head is None else head.shape[0]}
    if "pos_embed" in state:
        hints["pos_embed"] = "checkpoint"
    return mapped, [], hints


def _map_encoder_family(state: dict[str, Tensor], family: str) -> tuple[dict[str, Tensor], list[str], dict[str, Any]]:
    if family == "mm_vision" and any(k.startswith("vision_encoder.") for k in state):
        state = {(k.removeprefix("vision_encoder.") if k.startswith("vision_encoder.") else k): v
                 for k, v in state.items()}
    drops = DROPPED_BY_FAMILY[family]
    mapped: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        if any(key == name or key.startswith(name) for name in drops):
            dropped.append(key)
        elif key.startswith("pool_norm."):
            mapped["head.fc_norm." + key.removeprefix("pool_norm.")] = value
        else:
            mapped[key] = value
    if family == "mm_vision":
        hints: dict[str, Any] = {"final_norm": True, "pos_embed": "extend", "num_classes": 0}
    else:
        hints = {"final_norm": False, "num_classes": 0}
    return mapped, dropped, hints


def read_checkpoint(source: str | Path | Mapping[str, Any], trust_pickle: bool = False) -> Checkpoint:
    """Read a checkpoint file (or an already loaded object) and map it to this library's keys.

    Raises:
        CheckpointError: unreadable or truncated file, no state dict, or a layout not understood.
    """
    origin = str(source) if isinstance(source, (str, Path)) else "checkpoint object"
    obj = _torch_load(Path(source), trust_pickle) if isinstance(source, (str, Path)) else source
    state, native = _unwrap(obj, origin)
    if native is not None:
        labels = None if native["labels"] is None else list(native["labels"])
        return Checkpoint("umt", state, [], dict(native["config"]), native["name"], labels)
    family = _detect_family(state, origin)
    if family == "finetune":
        mapped, dropped, hints = _map_finetune(state)
    else:
        mapped, dropped, hints = _map_encoder_family(state, family)
    return Checkpoint(family, mapped, dropped, hints)


def load_weights(model: nn.Module, checkpoint: Checkpoint, head_mode: HeadMode = "load") -> LoadReport:
    """Load ``checkpoint`` into a ``VideoClassifier`` strictly.

    Only the classifier (``head.fc.*``, and ``head.fc_norm.*`` of stage-1 files) may be absent from the
    checkpoint: it is then initialised fresh and reported. Everything else must match key for key and
    shape for shape.

    Raises:
        CheckpointError: missing or unexpected keys, or a shape mismatch (naming key and both shapes).
    """
    state = dict(checkpoint.state_dict)
    target = model.state_dict()
    fresh_allowed = {k for k in target if k.startswith("head.fc.")}
    if checkpoint.family in ("pretrain", "mm_vision") and not any(k.startswith("head.fc_norm.") for k in state):
        fresh_allowed |= {k for k in target if k.startswith("head.fc_norm.")}  # stage-1 and QA files have none
    dropped = list(checkpoint.dropped)
    if "encoder.pos_embed" in state and "encoder.pos_embed" not in target:
        dropped.append("pos_embed")  # the model computes its own table (pos_embed policy is not 'checkpoint')
        del state["encoder.pos_embed"]
    if head_mode != "load":
        for key in [k for k in state if k.startswith("head.fc.")]:
            if head_mode == "reset":
                dropped.append(key)
                del state[key]
            elif state[key].shape[0] == 710 and target.get(key) is not None and target[key].shape[0] == 400:
                state[key] = state[key][:400]
            else:
                raise CheckpointError(f"head_mode='k710_to_k400' needs a 710-class checkpoint head and a "
                                      f"400-class model; {key} is {list(state[key].shape)}, the model's is "
                                      f"{list(target[key].shape) if key in target else 'absent'}")
    missing = sorted(set(target) - set(state) - fresh_allowed)
    unexpected = sorted(set(state) - set(target))
    mismatched = [(k, list(state[k].shape), list(target[k].shape))
                  for k in target if k in state and state[k].shape != target[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointError(_mismatch_message(checkpoint, model, missing, unexpected, mismatched))
    initialised = sorted(set(target) - set(state))
    model.load_state_dict({**{k: target[k] for k in initialised}, **state}, strict=True,
                          assign=any(t.is_meta for t in target.values()))
    report = LoadReport(checkpoint.family, sorted(dropped), initialised)
    logger.info(report.summary())
    return report


def _mismatch_message(checkpoint: Checkpoint, model: nn.Module, missing: list[str], unexpected: list[str],
                      mismatched: list[tuple[str, list[int], list[int]]]) -> str:
    config = getattr(model, "config", None)
    lines = [f"{checkpoint.family} checkpoint does not fit the model"]
    if config is not None:
        lines[0] += (f": the file holds an encoder of embed_dim {checkpoint.embed_dim}, depth {checkpoint.depth}; "
                     f"the model has embed_dim {config.embed_dim}, depth {config.depth}")
    for key, have, want in mismatched[:8]:
        lines.append(f"  {key}: checkpoint {have} vs model {want}")
        if key == "encoder.pos_embed" and config is not None:
            per_frame = config.grid[0] * config.grid[1]
            lines.append(f"    (the file's table has {have[1]} tokens = {have[1] / per_frame:g} frames of "
                         f"{per_frame} tokens; set num_frames / img_size to match)")
        if key == "head.fc.weight":
            lines.append("    (set num_classes to match, or head_mode='reset' / 'k710_to_k400')")
    if missing:
        lines.append(f"  missing from the checkpoint: {key_groups(missing)} ({len(missing)} keys)")
    if unexpected:
        lines.append(f"  not in the model: {key_groups(unexpected)} ({len(unexpected)} keys)")
    return "\n".join(lines)


def save_native(model: nn.Module, path: str | Path, name: str, labels: list[str] | None = None) -> None:
    """Write ``model`` (a ``VideoClassifier``) as a ``umt`` file: format tag, model name, config, weights, and
    the class names of its head when given (one per row)."""
    classes = model.config.num_classes
    if labels is not None and len(labels) != classes:
        raise CheckpointError(f"{len(labels)} class names given for a head of {classes} classes")
    extra = {} if labels is None else {"labels": list(labels)}
    torch.save({"format": NATIVE_FORMAT, "version": NATIVE_VERSION, "name": name,
                "config": asdict(model.config), "state_dict": model.state_dict(), **extra}, path)


VIDEO_TEXT_DROPPED = ("clip_teacher.", "vision_encoder.clip_decoder.", "text_encoder.bert.embeddings.position_ids")
"""Stage-2 keys dropped by design: the CLIP teacher and alignment heads (pre-training only) and the position-id
buffer older transformers saved."""

TIED_KEYS = {
    "text_encoder.cls.predictions.decoder.weight": "text_encoder.bert.embeddings.word_embeddings.weight",
    "text_encoder.cls.predictions.decoder.bias": "text_encoder.cls.predictions.bias",
}
"""MLM decoder tensors that are the same parameters as the ones they map to (tied weights)."""


def _video_text_family(state: dict[str, Tensor], origin: str) -> str:
    keys = set(state)
    if any(k.startswith("text_decoder.") for k in keys):
        raise CheckpointError(f"{origin} is a video-QA model (text_decoder.*), which VideoTextModel does not hold")
    if "vision_encoder.encoder.patch_embed.proj.weight" in keys:
        if any(k.startswith("text_encoder.bert.") for k in keys):
            return "mm_model"
        if any(k.startswith("text_encoder.embeddings.") for k in keys):
            return "mm_retrieval"
    video_family = _detect_family(state, origin)
    raise CheckpointError(f"{origin} holds a {video_family} video checkpoint without a text encoder, not a stage-2 "
                          "video-text model; load it with umt.create_model")


def read_video_text_checkpoint(source: str | Path | Mapping[str, Any], trust_pickle: bool = False) -> Checkpoint:
    """Read an official stage-2 model (pre-trained or retrieval fine-tuned) and map it to ``VideoTextModel`` keys.

    Raises:
        CheckpointError: unreadable file, a video-only / QA / ``umt convert`` file, or tied MLM decoder tensors
            that differ from the embeddings they are tied to.
    """
    origin = str(source) if isinstance(source, (str, Path)) else "checkpoint object"
    obj = _torch_load(Path(source), trust_pickle) if isinstance(source, (str, Path)) else source
    state, native = _unwrap(obj, origin)
    if native is not None:
        raise CheckpointError(f"{origin} is a `umt convert` file of a video model, not a stage-2 video-text model")
    family = _video_text_family(state, origin)
    mapped: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        if key.startswith(VIDEO_TEXT_DROPPED):
            dropped.append(key)
            continue
        if key.startswith("vision_encoder.pool_norm."):
            key = "vision_encoder.head.fc_norm." + key.removeprefix("vision_encoder.pool_norm.")
        elif family == "mm_retrieval" and key.startswith("text_encoder."):
            key = "text_encoder.bert." + key.removeprefix("text_encoder.")
            if key == "text_encoder.bert.embeddings.position_ids":
                dropped.append(key)
                continue
        mapped[key] = value
    for tied, source_key in TIED_KEYS.items():
        if tied in mapped:
            if source_key in mapped and not torch.equal(mapped[tied], mapped[source_key]):
                raise CheckpointError(f"{origin}: {tied} differs from {source_key}, but the two are tied")
            del mapped[tied]
    return Checkpoint(family, mapped, dropped)


def load_video_text_weights(model: nn.Module, checkpoint: Checkpoint) -> LoadReport:
    """Load a ``read_video_text_checkpoint`` result into a ``VideoTextModel`` strictly.

    Only the MLM head of an ``mm_retrieval`` file (which has none) may be absent: it is initialised fresh and
    reported. Everything else must match key for key and shape for shape.

    Raises:
        CheckpointError: missing or unexpected keys, or shape mismatches (naming keys and both shapes).
    """
    state = checkpoint.state_dict
    target = {k: v for k, v in model.state_dict().items() if k not in TIED_KEYS}
    fresh_allowed = set()
    if checkpoint.family == "mm_retrieval":
        fresh_allowed = {k for k in target if k.startswith("text_encoder.cls.")}
    check_fit(state, target, "the video-text model", checkpoint.family, fresh_allowed)
    initialised = sorted(set(target) - set(state))
    model.load_state_dict({**model.state_dict(), **state}, strict=True)
    report = LoadReport(checkpoint.family, sorted(checkpoint.dropped), initialised)
    logger.info(report.summary())
    return report


@dataclass
class CheckpointParts:
    """Any checkpoint split for ``umt.UMTModule``: the encoder's tensors and the rest, for the heads to take.

    Attributes:
        family: ``finetune``, ``pretrain``, ``mm_vision``, ``umt``, ``mm_model``, ``mm_retrieval``, ``mm_qa``
            (a video-QA file), ``ava`` (an official AVA detector) or ``module`` (a ``UMTModule`` Lightning
            checkpoint).
        encoder: ``VideoViT`` keys (the stage-1 final norm included where the file has one).
        rest: every other tensor under this library's names: ``head.fc_norm.*`` / ``head.fc.*`` (classifiers),
            ``pool_norm.*``, ``text_encoder.*``, ``vision_proj.*``, ``text_proj.*``, ``itm_head.*``, ``temp``
            (stage 2), ``text_encoder.bert.*`` / ``text_decoder.*`` (QA), ``norm.*`` / ``head.fc.*`` (the AVA
            detector's final norm and ROI classifier), ``heads.{name}.*`` (module checkpoints).
        raw: the file's tensors under their own names (e.g. the official ``clip_decoder.*``).
        dropped: keys the family drops by design.
        hints: encoder options the layout implies (``final_norm``, ``pos_embed``).
        labels: class names stored in the file, or None.
        hyper_parameters: a module checkpoint's hyper-parameters (plain values), else empty.
    """

    family: str
    encoder: dict[str, Tensor]
    rest: dict[str, Tensor]
    raw: dict[str, Tensor]
    dropped: list[str] = field(default_factory=list)
    hints: dict[str, Any] = field(default_factory=dict)
    labels: list[str] | None = None
    hyper_parameters: dict[str, Any] = field(default_factory=dict)


def _is_module_checkpoint(obj: Any) -> bool:
    if not isinstance(obj, Mapping) or "pytorch-lightning_version" not in obj:
        return False
    state = obj.get("state_dict")
    return isinstance(state, Mapping) and any(k.startswith("encoder.") for k in state)


def read_parts(source: str | Path | Mapping[str, Any], trust_pickle: bool = False) -> CheckpointParts:
    """Read any checkpoint this library understands (official classifier, stage-1, stage-2, retrieval files,
    ``umt convert`` files, ``UMTModule`` checkpoints) through one guarded ``torch.load``.

    Raises:
        CheckpointError: unreadable or truncated file, or a layout not understood.
    """
    origin = str(source) if isinstance(source, (str, Path)) else "checkpoint object"
    obj = _torch_load(Path(source), trust_pickle) if isinstance(source, (str, Path)) else source
    if _is_module_checkpoint(obj):
        state = dict(obj["state_dict"])
        encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        rest = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        norm = "norm.weight" in encoder
        return CheckpointParts("module", encoder, rest, state, hints={"final_norm": norm},
                               hyper_parameters=dict(obj.get("hyper_parameters", {})))
    raw, _ = _unwrap(obj, origin)
    if any(k.startswith("text_decoder.") for k in raw):
        from umt.qa_checkpoints import read_qa_checkpoint  # imports this module

        loaded = read_qa_checkpoint(obj, trust_pickle)
        encoder_prefix = "vision_encoder.encoder."
        encoder = {k.removeprefix(encoder_prefix): v for k, v in loaded.state_dict.items()
                   if k.startswith(encoder_prefix)}
        rest = {k: v for k, v in loaded.state_dict.items() if not k.startswith(encoder_prefix)}
        return CheckpointParts(loaded.family, encoder, rest, raw, loaded.dropped,
                               {"final_norm": True, "pos_embed": "extend"})
    if any(k.startswith("text_encoder.") for k in raw):
        loaded = read_video_text_checkpoint(obj, trust_pickle)
        encoder_prefix, pool_prefix = "vision_encoder.encoder.", "vision_encoder.head.fc_norm."
        encoder = {k.removeprefix(encoder_prefix): v for k, v in loaded.state_dict.items()
                   if k.startswith(encoder_prefix)}
        rest = {("pool_norm." + k.removeprefix(pool_prefix) if k.startswith(pool_prefix) else k): v
                for k, v in loaded.state_dict.items() if not k.startswith(encoder_prefix)}
        return CheckpointParts(loaded.family, encoder, rest, raw, loaded.dropped,
                               {"final_norm": True, "pos_embed": "extend"})
    if "patch_embed.proj.weight" in raw and "norm.weight" in raw and "fc_norm.weight" not in raw:
        return _detector_parts(obj, raw, trust_pickle)
    loaded = read_checkpoint(obj, trust_pickle)
    encoder = {k.removeprefix("encoder."): v for k, v in loaded.state_dict.items() if k.startswith("encoder.")}
    rest = {k: v for k, v in loaded.state_dict.items() if not k.startswith("encoder.")}
    dropped = list(loaded.dropped)
    if loaded.family == "pretrain" and "encoder.norm.weight" in raw:
        encoder |= {k.removeprefix("encoder."): raw[k] for k in ("encoder.norm.weight", "encoder.norm.bias")}
        dropped = [k for k in dropped if not k.startswith("encoder.norm.")]
    return CheckpointParts(loaded.family, encoder, rest, raw, dropped, dict(loaded.config), loaded.labels)


def _detector_parts(obj: Any, raw: dict[str, Tensor], trust_pickle: bool) -> CheckpointParts:
    """An official AVA detector file: the encoder without its final norm; the norm (``norm.*``) and the ROI
    classifier (``head.fc.*``) left to the detection head; the ``online`` table."""
    from umt.detection.checkpoints import read_detector_checkpoint  # umt.detection imports this module

    loaded = read_detector_checkpoint(obj, trust_pickle)
    state = {k.removeprefix("encoder."): v for k, v in loaded.state_dict.items()}
    encoder = {k: v for k, v in state.items() if not k.startswith(("norm.", "head."))}
    rest = {k: v for k, v in state.items() if k not in encoder}
    return CheckpointParts(loaded.family, encoder, rest, raw, loaded.dropped, {"final_norm": False,
                                                                               "pos_embed": "online"})


def check_fit(state: Mapping[str, Tensor], target: Mapping[str, Tensor], what: str, family: str,
              fresh_allowed: set[str] | frozenset[str] = frozenset(), prefix: str = "") -> None:
    """Raise one clear error unless ``state`` fits ``target`` key for key and shape for shape (keys in
    ``fresh_allowed`` may be missing).

    Args:
        state: the checkpoint's tensors for the part; target: the part's own state dict.
        what: the part, for the message (``the encoder``, ``the video_text head``); family: the checkpoint family.
        fresh_allowed: target keys that may start fresh; prefix: put before key names in the message.

    Raises:
        CheckpointError: naming the mismatched shapes and the missing and unexpected key groups.
    """
    missing = sorted(set(target) - set(state) - set(fresh_allowed))
    unexpected = sorted(set(state) - set(target))
    mismatched = [f"  {prefix}{k}: checkpoint {list(v.shape)} vs model {list(target[k].shape)}"
                  for k, v in state.items() if k in target and v.shape != target[k].shape]
    if missing or unexpected or mismatched:
        lines = [f"{family} checkpoint does not fit {what}", *mismatched[:8]]
        if len(mismatched) > 8:
            lines.append(f"  ... and {len(mismatched) - 8} more shape mismatches")
        if missing:
            lines.append(f"  missing from the checkpoint: {key_groups([prefix + k for k in missing])} "
                         f"({len(missing)} keys)")
        if unexpected:
            lines.append(f"  not in the model: {key_groups([prefix + k for k in unexpected])} ({len(unexpected)} keys)")
        raise CheckpointError("\n".join(lines))


def video_text_heads(keys: Iterable[str]) -> set[str]:
    """Names of the heads of a ``UMTModule`` checkpoint's keys that hold a video-text tower
    (``heads.{name}.tower.text_encoder.*``: ``video_text``, ``multiple_choice``, a plugin subclass)."""
    return {key.split(".", 2)[1] for key in keys if key.startswith("heads.") and ".tower.text_encoder." in key}
