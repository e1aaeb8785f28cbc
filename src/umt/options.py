"""Typed options of ``umt.UMTModule``: the encoder, the teacher, the masking policy and the optimizer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from umt.errors import UsageError
from umt.models.config import ModelConfig, get_config
from umt.models.pos_embed import PosEmbedPolicy

EncoderInit = Literal["trunc_normal", "xavier"]


@dataclass(frozen=True)
class EncoderConfig:
    """The video encoder: a named size with overrides (None keeps the size's value, or what a checkpoint says).

    Attributes:
        size: ``umt_b16`` or ``umt_l16``.
        num_frames: input frames T (None: the data module's, linked by the CLI, else 8).
        img_size: input side in pixels (None: the data module's, else 224).
        drop_path_rate: stochastic depth over the blocks (None: the size's 0.1 / 0.2).
        checkpoint_blocks: activation checkpointing of the first N blocks while training.
        final_norm: LayerNorm after the last block (stage-1/2 encoders); None: from the checkpoint, else False.
        pos_embed: position-table policy (``interpolate``, ``extend``, ``checkpoint``); None: from the
            checkpoint, else ``interpolate`` (the official classifiers; stage-1/2 encoders use ``extend``).
        ckpt_num_frames: with ``pos_embed="extend"``: frames the table was built for.
        embed_dim: width C (custom sizes).
        depth: blocks (custom sizes).
        num_heads: attention heads (custom sizes).
        patch_size: patch side in pixels (custom sizes).
        tubelet_size: frames per token (custom sizes).
        mlp_ratio: MLP width / C (custom sizes).
        init: weight init of a fresh encoder: ``trunc_normal`` (fine-tuning) or ``xavier`` (pre-training).
    """

    size: str = "umt_b16"
    num_frames: int | None = None
    img_size: int | None = None
    drop_path_rate: float | None = None
    checkpoint_blocks: int = 0
    final_norm: bool | None = None
    pos_embed: PosEmbedPolicy | None = None
    ckpt_num_frames: int | None = None
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    patch_size: int | None = None
    tubelet_size: int | None = None
    mlp_ratio: float | None = None
    init: EncoderInit = "trunc_normal"

    def with_input(self, num_frames: int | None, img_size: int | None) -> EncoderConfig:
        """This config with the frames and size of the data (None: not stated) where it leaves them None.

        Args:
            num_frames: frames T of the data's clips.
            img_size: side of the data's clips.

        Raises:
            UsageError: the encoder states a value the data contradicts (state it once, in the data module).
        """
        data = {"num_frames": num_frames, "img_size": img_size}
        for key, value in data.items():
            mine = getattr(self, key)
            if mine is not None and value is not None and mine != value:
                raise UsageError(f"model.encoder.{key} is {mine} but the data module gives {value}: state it once, "
                                 f"as --data.{key} (leave model.encoder.{key} out)")
        return dataclasses.replace(self, **{k: v for k, v in data.items() if getattr(self, k) is None})

    def model_config(self, hints: dict[str, object] | None = None) -> ModelConfig:
        """The ``ModelConfig`` of the encoder; ``hints`` (from a checkpoint) fill the fields left None."""
        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k in fields and v is not None}
        defaults = {"final_norm": False, "pos_embed": "interpolate"}
        for key in ("final_norm", "pos_embed"):
            if key not in values:
                values[key] = (hints or {}).get(key, defaults[key])
        return get_config(self.size, **values, num_classes=0)


@dataclass(frozen=True)
class TeacherSpec:
    """The frozen CLIP teacher of unmasked-token alignment.

    Attributes:
        name: ``clip_b16`` or ``clip_l14``.
        weights: CLIP visual weights (OpenAI, open_clip or the official extracted file); None: random (tests).
        return_layers: K, the last teacher layers returned (None: the size's 6).
        image_size: side the teacher runs at (None: the size's).
        width: tower width (custom teachers).
        layers: tower blocks (custom teachers).
        heads: attention heads (custom teachers).
        output_dim: projection width D (custom teachers).
        patch_size: patch side (custom teachers).
        autocast: half precision of the teacher on CUDA (``float16``, ``bfloat16``, or ``none``).
    """

    name: str = "clip_b16"
    weights: str | None = None
    return_layers: int | None = None
    image_size: int | None = None
    width: int | None = None
    layers: int | None = None
    heads: int | None = None
    output_dim: int | None = None
    patch_size: int | None = None
    autocast: Literal["float16", "bfloat16", "none"] = "float16"

    def overrides(self) -> dict[str, int]:
        """The ``TeacherConfig`` fields this spec sets."""
        names = ("return_layers", "image_size", "width", "layers", "heads", "output_dim", "patch_size")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass(frozen=True)
class MaskingConfig:
    """How the teacher's last-block CLS attention picks the tokens the student sees (SPEC.md §1.3).

    Attributes:
        video_ratio: share of each frame's tokens hidden in videos.
        image_ratio: share hidden in images (T = 1; stage 2).
    """

    video_ratio: float = 0.8
    image_ratio: float = 0.5


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with layer-wise lr decay, warm-up then per-step cosine (one set-up for every task).

    Attributes:
        lr: peak lr; per 256 clips when ``batch_scaled`` (multiplied by ``clips per step * world size *
            accumulation / 256``).
        min_lr: lr at the end of the cosine (scaled like ``lr``).
        warmup_lr: lr at the start of the warm-up (scaled like ``lr``).
        warmup_epochs: epochs of linear warm-up (fractions allowed).
        weight_decay: on parameters with more than one dimension (not biases, norms, temperatures).
        layer_decay: lr factor ``layer_decay ** (depth + 1 - layer id)`` over the encoder (1: none); heads
            are at ``depth + 1``.
        betas: AdamW betas.
        eps: AdamW epsilon.
        batch_scaled: scale the lrs by the global batch / 256 (single-modality recipes); stage-2 recipes give
            the lr as it is.
        floor_warmup: never go below ``min_lr``, in the warm-up too (the official stage-2 schedule).
    """

    lr: float = 1e-3
    min_lr: float = 1e-6
    warmup_lr: float = 0.0
    warmup_epochs: float = 5.0
    weight_decay: float = 0.05
    layer_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    batch_scaled: bool = True
    floor_warmup: bool = False
