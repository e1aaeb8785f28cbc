"""Read official video-QA checkpoints (or initialise one from a stage-2 model, the official way) and load them
into ``VideoQAModel`` strictly.

Layouts understood, each wrapped in ``model``, ``module`` or bare:

- ``mm_qa``: QA fine-tuned files (``vision_encoder.*`` without ``pool_norm``, ``text_encoder.*`` a ``BertModel``
  without ``bert.``, ``text_decoder.bert.*`` / ``text_decoder.cls.*``).
- ``mm_model``: stage-2 pre-training files (official, or a ``VideoTextModel`` state dict), turned into the QA layout
  as the official ``setup_model`` does: decoder layer i = encoder layer ``fusion_layer + i``, embeddings and the
  MLM head copied into the decoder, ``bert.`` prefixes removed from the encoder; the contrastive and matching
  heads, ``pool_norm``, the teacher and the alignment heads are dropped and reported.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from umt.checkpoints import Checkpoint, CheckpointError, LoadReport, _detect_family, _torch_load, _unwrap, check_fit

logger = logging.getLogger("umt")

QA_DROPPED = ("vision_encoder.clip_decoder.", "clip_teacher.")
"""QA-layout keys dropped by design: alignment heads (some files keep them) and a CLIP teacher."""

STAGE2_DROPPED = ("vision_encoder.pool_norm.", "vision_encoder.head.", "vision_proj.", "text_proj.", "itm_head.",
                  "temp")
"""Stage-2 keys the QA model has no place for (the official ``UMT_QA`` deletes these modules)."""

QA_TIED_KEYS = {
    "text_decoder.cls.predictions.decoder.weight": "text_decoder.bert.embeddings.word_embeddings.weight",
    "text_decoder.cls.predictions.decoder.bias": "text_decoder.cls.predictions.bias",
}
"""Answer-decoder tensors that are the same parameters as the ones they map to (tied weights)."""

_LAYER = re.compile(r"text_encoder\.bert\.encoder\.layer\.(\d+)\.(.+)")


def stage2_fusion_layer(state: Mapping[str, Tensor]) -> int:
    """First text layer with cross-attention in an official stage-2 state dict (9 for BERT-base, 19 for large).

    Raises:
        CheckpointError: no cross-attention layer.
    """
    layers = [int(m.group(1)) for k in state if (m := _LAYER.match(k)) and m.group(2).startswith("crossattention.")]
    if not layers:
        raise CheckpointError("the stage-2 text encoder has no cross-attention layer (text_encoder.bert.encoder."
                              "layer.*.crossattention.*), so it cannot initialise a QA decoder")
    return min(layers)


def stage2_to_qa(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The official stage-2 -> QA initialisation, on official key names.

    ``text_encoder.bert.X`` becomes ``text_encoder.X``; the embeddings, the layers ``l >= fusion_layer`` (as decoder
    layer ``l - fusion_layer``) and ``text_encoder.cls.*`` are also copied to ``text_decoder.*``. Other keys pass
    through unchanged.
    """
    fusion = stage2_fusion_layer(state)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("text_encoder.bert."):
            out["text_encoder." + key.removeprefix("text_encoder.bert.")] = value
            layer = _LAYER.match(key)
            if layer is None:
                out["text_decoder." + key.removeprefix("text_encoder.")] = value
            elif int(layer.group(1)) >= fusion:
                out[f"text_decoder.bert.encoder.layer.{int(layer.group(1)) - fusion}.{layer.group(2)}"] = value
        elif key.startswith("text_encoder.cls."):
            out["text_decoder." + key.removeprefix("text_encoder.")] = value
        else:
            out[key] = value
    return out


def _qa_family(state: dict[str, Tensor], origin: str) -> str:
    keys = set(state)
    if any(k.startswith("text_decoder.") for k in keys):
        return "mm_qa"
    has_video = "vision_encoder.encoder.patch_embed.proj.weight" in keys
    if has_video and any(k.startswith("text_encoder.bert.") for k in keys):
        return "mm_model"
    if any(k.startswith("text_encoder.") for k in keys):
        raise CheckpointError(f"{origin} is a retrieval / multiple-choice model (text encoder without `bert.` and no "
                              "answer decoder), not a video-QA model; initialise QA from a stage-2 pre-training file")
    raise CheckpointError(f"{origin} holds a {_detect_family(state, origin)} video checkpoint without a text encoder, "
                          "not a video-QA model or a stage-2 model to initialise one from")


def _map_qa(state: dict[str, Tensor], origin: str, dropped_prefixes: tuple[str, ...]) -> tuple[dict[str, Tensor],
                                                                                                list[str]]:
    """Official QA layout -> ``VideoQAModel`` keys, and the keys dropped by design."""
    mapped: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        if key.startswith(dropped_prefixes) or key.endswith(".embeddings.position_ids"):
            dropped.append(key)
        elif key.startswith("text_encoder."):
            mapped["text_encoder.bert." + key.removeprefix("text_encoder.")] = value
        else:
            mapped[key] = value
    for tied, source in QA_TIED_KEYS.items():
        if tied in mapped:
            value, other = mapped.pop(tied), mapped.get(source)
            if other is not None and not value.is_meta and not torch.equal(value, other):
                raise CheckpointError(f"{origin}: {tied} differs from {source}, but the two are tied")
    return mapped, dropped


def read_qa_checkpoint(source: str | Path | Mapping[str, Any], trust_pickle: bool = False) -> Checkpoint:
    """Read a QA fine-tuned file, or a stage-2 file to initialise a QA model from, mapped to ``VideoQAModel`` keys.

    Args:
        source: a file path or an already loaded checkpoint object.
        trust_pickle: allow files that hold Python objects besides tensors (only for trusted sources).

    Raises:
        CheckpointError: unreadable file, a retrieval / classifier / video-only file, or tied tensors that differ.
    """
    origin = str(source) if isinstance(source, (str, Path)) else "checkpoint object"
    obj = _torch_load(Path(source), trust_pickle) if isinstance(source, (str, Path)) else source
    state, native = _unwrap(obj, origin)
    if native is not None:
        raise CheckpointError(f"{origin} is a `umt convert` file of a video model, not a video-QA model")
    family = _qa_family(state, origin)
    if family == "mm_model":
        mapped, dropped = _map_qa(stage2_to_qa(state), origin, QA_DROPPED + STAGE2_DROPPED)
    else:
        mapped, dropped = _map_qa(state, origin, QA_DROPPED)
    return Checkpoint(family, mapped, sorted(dropped))


def load_qa_weights(model: nn.Module, checkpoint: Checkpoint) -> LoadReport:
    """Load a ``read_qa_checkpoint`` result into a ``VideoQAModel`` strictly (a model on the meta device takes the
    checkpoint's tensors as they are).

    Raises:
        CheckpointError: missing or unexpected keys, or shape mismatches (naming keys and both shapes).
    """
    state = dict(checkpoint.state_dict)
    full = model.state_dict()
    target = {k: v for k, v in full.items() if k not in QA_TIED_KEYS}
    check_fit(state, target, "the video-QA model", checkpoint.family)
    state |= {tied: state[source] for tied, source in QA_TIED_KEYS.items() if tied in full}
    model.load_state_dict(state, strict=True, assign=any(t.is_meta for t in full.values()))
    report = LoadReport(checkpoint.family, sorted(checkpoint.dropped), [])
    logger.info(report.summary())
    return report
