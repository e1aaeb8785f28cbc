"""VideoTextModel: the UMT stage-2 model (video encoder, BERT with fusion layers, projections, ITM head)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umt import zoo
from umt.checkpoints import (
    Checkpoint,
    CheckpointError,
    load_video_text_weights,
    read_parts,
    read_video_text_checkpoint,
)
from umt.models.classifier import VideoClassifier
from umt.models.config import MODEL_CONFIGS, ModelConfig
from umt.models.text import TEXT_CONFIGS, TextConfig, TextEncoder

TEMP_RANGE = (0.001, 0.5)
"""Bounds the official model clamps the temperature to (in place, at the start of every training forward)."""


@dataclass(frozen=True)
class VideoTextConfig:
    """Sizes of a stage-2 model.

    Attributes:
        vision: the video encoder; stage-2 encoders have ``final_norm=True``, ``pos_embed="extend"`` and
            ``num_classes=0`` (their pooled norm is ``pool_norm``).
        text: the BERT side; ``text.encoder_width`` must equal ``vision.embed_dim``.
        embed_dim: width E of the contrastive projections ``vision_proj`` and ``text_proj``.
        temp: initial temperature.
    """

    vision: ModelConfig
    text: TextConfig
    embed_dim: int = 512
    temp: float = 0.07

    def __post_init__(self) -> None:
        v = self.vision
        problems = []
        if not v.final_norm or v.pos_embed != "extend" or v.num_classes != 0:
            problems.append("vision must be a stage-2 encoder: final_norm=True, pos_embed='extend', num_classes=0 "
                            f"(got {v.final_norm}, {v.pos_embed!r}, {v.num_classes})")
        if self.text.encoder_width != v.embed_dim:
            problems.append(f"text.encoder_width={self.text.encoder_width} differs from vision.embed_dim={v.embed_dim}")
        if problems:
            raise ValueError("invalid video-text config: " + "; ".join(problems))

    def replace_vision(self, **overrides: object) -> VideoTextConfig:
        """A copy whose vision config has ``overrides`` (e.g. ``num_frames=12`` for retrieval)."""
        return dataclasses.replace(self, vision=self.vision.replace(**overrides))


def _stage2_vision(name: str) -> ModelConfig:
    return MODEL_CONFIGS[name].replace(num_frames=4, final_norm=True, pos_embed="extend", num_classes=0)


VIDEO_TEXT_CONFIGS: dict[str, VideoTextConfig] = {
    "umt_b16": VideoTextConfig(_stage2_vision("umt_b16"), TEXT_CONFIGS["bert_base"], embed_dim=512),
    "umt_l16": VideoTextConfig(_stage2_vision("umt_l16"), TEXT_CONFIGS["bert_large"], embed_dim=768),
}
"""Stage-2 sizes (4 frames, 224 px): UMT-B/16 with BERT-base, UMT-L/16 with BERT-large."""


class VideoTextTower(nn.Module):
    """The text side of a stage-2 model, keyed like the official ``UMT``: BERT with fusion layers
    (``text_encoder``), the contrastive projections, the ITM head and the temperature.

    Args:
        text: the BERT sizes (``encoder_width`` = the video width).
        embed_dim: width E of the contrastive projections.
        temp: initial temperature.
    """

    def __init__(self, text: TextConfig, embed_dim: int = 512, temp: float = 0.07) -> None:
        super().__init__()
        self.text_config = text
        self.text_encoder = TextEncoder(text)
        self.vision_proj = nn.Linear(text.encoder_width, embed_dim)
        self.text_proj = nn.Linear(text.hidden_size, embed_dim)
        self.itm_head = nn.Linear(text.hidden_size, 2)
        self.temp = nn.Parameter(torch.tensor(temp))
        for layer in (self.vision_proj, self.text_proj, self.itm_head):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Text-only layers: ``input_ids [B, L]``, ``attention_mask [B, L]`` -> ``[B, L, H]``."""
        return self.text_encoder.forward_text(input_ids, attention_mask)

    def clamp_temperature(self) -> None:
        """Clamp ``temp`` in place to ``TEMP_RANGE`` (the official forward does this before every training step)."""
        with torch.no_grad():
            self.temp.clamp_(*TEMP_RANGE)

    def video_embedding(self, pooled: Tensor) -> Tensor:
        """L2-normalised ``vision_proj`` of pooled features: ``[B, P, C] -> [B, P, E]``."""
        return F.normalize(self.vision_proj(pooled), dim=-1)

    def text_embedding(self, text_states: Tensor) -> Tensor:
        """L2-normalised ``text_proj`` of the [CLS] state: ``[B, L, H] -> [B, E]``."""
        return F.normalize(self.text_proj(text_states[:, 0]), dim=-1)

    def similarity(self, video_pooled: Tensor, text_states: Tensor) -> Tensor:
        """Contrastive scores ``[V, T]``: the mean over the pooled axis P of cosine(video, text) / temp.

        Args:
            video_pooled: ``[V, P, C]`` from ``encode_video`` (P = 1, or frames with ``per_frame``).
            text_states: ``[T, L, H]`` from ``encode_text``.

        Uses ``temp`` as it is; training calls ``clamp_temperature`` once per step first, as the official model.
        """
        if video_pooled.ndim != 3 or text_states.ndim != 3:
            raise ValueError(f"expected video_pooled [V, P, C] and text_states [T, L, H], got "
                             f"{list(video_pooled.shape)} and {list(text_states.shape)}")
        cosine = torch.einsum("vpe,te->vpt", self.video_embedding(video_pooled), self.text_embedding(text_states))
        return cosine.mean(1) / self.temp

    def itm_logits(self, video_tokens: Tensor, text_states: Tensor, attention_mask: Tensor) -> Tensor:
        """Matching logits of aligned pairs: video ``i`` with text ``i``.

        Args:
            video_tokens: ``[B, N, C]``; text_states: ``[B, L, H]``; attention_mask: ``[B, L]``.

        Returns:
            ``[B, 2]`` (index 1 = "match") from ``itm_head`` on the fused [CLS] state.
        """
        fused = self.text_encoder.forward_fusion(text_states, attention_mask, video_tokens)
        return self.itm_head(fused[:, 0])

    def itm_scores(self, video_tokens: Tensor, text_states: Tensor, attention_mask: Tensor) -> Tensor:
        """"Match" logits of every (video i, text j) pair, ``[V, T]``, from ``video_tokens [V, N, C]``,
        ``text_states [T, L, H]`` and ``attention_mask [T, L]``; runs the fusion layers on V·T pairs at once."""
        videos, texts = video_tokens.shape[0], text_states.shape[0]
        logits = self.itm_logits(video_tokens.repeat_interleave(texts, 0), text_states.repeat(videos, 1, 1),
                                 attention_mask.repeat(videos, 1))
        return logits[:, 1].reshape(videos, texts)

    def mlm_logits(self, input_ids: Tensor, attention_mask: Tensor, video_tokens: Tensor) -> Tensor:
        """Masked-language-model logits ``[B, L, vocab]`` of ``input_ids [B, L]`` through all text layers,
        the fusion layers attending to ``video_tokens [B, N, C]`` (all tokens, no video mask)."""
        return self.text_encoder.mlm_logits(input_ids, attention_mask, video_tokens)


class VideoTextModel(VideoTextTower):
    """Video encoder plus text encoder, keyed like the official stage-2 ``UMT`` (without its teacher).

    Typical use: ``tokens, pooled = model.encode_video(video)``; ``text = model.encode_text(ids, mask)``;
    ``model.similarity(pooled, text)`` ranks by contrastive score, ``model.itm_scores(tokens, text, mask)``
    re-ranks by the matching head.
    """

    def __init__(self, config: VideoTextConfig) -> None:
        super().__init__(config.text, config.embed_dim, config.temp)
        self.config = config
        self.vision_encoder = VideoClassifier(config.vision)

    def encode_video(self, video: Tensor, mask: Tensor | None = None, per_frame: bool = False) -> tuple[Tensor, Tensor]:
        """Encode ``video [B, 3, T, H, W]`` (T = 1: an image).

        Args:
            mask: optional bool ``[B, N]``, True = dropped token (see ``VideoViT.forward``).
            per_frame: pool each frame separately (the official ``keep_temporal``; needs no mask).

        Returns:
            tokens ``[B, N_vis, C]`` after the final norm, and pooled ``[B, 1, C]`` (``[B, T, C]`` per frame),
            ``pool_norm`` of the token mean.
        """
        out = self.vision_encoder.encode(video, mask)
        pooled = self.vision_encoder.head.pool(out, per_frame)
        return out.tokens, pooled if per_frame else pooled[:, None]


def create_video_text_model(
    config: str | VideoTextConfig = "umt_b16",
    checkpoint: str | Path | Mapping[str, Any] | Checkpoint | None = None,
    *,
    pretrained: bool | str | None = None,
    trust_pickle: bool = False,
) -> VideoTextModel:
    """Build a stage-2 video-text model (``umt_b16``, ``umt_l16`` or a ``VideoTextConfig``) and load an
    official stage-2 or retrieval checkpoint strictly: what is dropped by design (the CLIP teacher, alignment
    heads, the legacy ``position_ids`` buffer) is reported in one log line; anything else that does not fit
    raises.

    Args:
        checkpoint: a file path, a loaded checkpoint object, or a ``Checkpoint`` from
            ``read_video_text_checkpoint``.
        pretrained: a model-zoo name (``b16_25m``, ``ret_msrvtt_b16_25m``, ...; see ``umt.zoo``) or a local path,
            fetched through the Hugging Face cache; with a named ``config`` the file's frames become the
            encoder's. ``True``: the zoo's 25M stage-2 model. Not together with ``checkpoint``.
        trust_pickle: allow files that hold Python objects besides tensors (only for trusted sources).

    Raises:
        KeyError: unknown name. CheckpointError: unreadable file, another family, or keys/shapes that differ
            (``umt.zoo.ZooError``, a subclass, for a zoo name that is unknown, of another model, or not available).
    """
    name = config if isinstance(config, str) else None
    if isinstance(config, str):
        if config not in VIDEO_TEXT_CONFIGS:
            raise KeyError(f"unknown video-text model {config!r}; known: {', '.join(sorted(VIDEO_TEXT_CONFIGS))}")
        config = VIDEO_TEXT_CONFIGS[config]
    if pretrained not in (None, False):
        if checkpoint is not None:
            raise ValueError("give either checkpoint or pretrained, not both")
        checkpoint, defaults = zoo.fetch(name, pretrained, ("mm_model", "mm_retrieval"))
        if name is not None and defaults:
            config = config.replace_vision(**defaults)
    model = VideoTextModel(config)
    if checkpoint is not None:
        loaded = (checkpoint if isinstance(checkpoint, Checkpoint)
                  else read_video_text_checkpoint(checkpoint, trust_pickle))
        if loaded.family not in ("mm_model", "mm_retrieval"):
            raise CheckpointError(f"a {loaded.family} checkpoint holds no stage-2 video-text model; "
                                  "load it with umt.create_model")
        load_video_text_weights(model, loaded)
    return model


def load_video_text_model(source: str | Path, trust_pickle: bool = False) -> VideoTextModel:
    """A ready ``VideoTextModel`` from an official stage-2 / retrieval file (``umt_b16`` or ``umt_l16`` by its
    width) or a ``UMTModule`` checkpoint with a ``video_text`` head (sizes from its hyper-parameters).

    Raises:
        CheckpointError: another kind of file.
    """
    parts = read_parts(source, trust_pickle)
    if parts.family == "module":
        from umt.module import typed
        from umt.options import EncoderConfig

        prefix = "heads.video_text."
        spec = next((h for h in parts.hyper_parameters.get("heads", [])
                     if h["class_path"].endswith(".VideoTextHead")), None)
        if spec is None or not any(k.startswith(prefix) for k in parts.rest):
            raise CheckpointError(f"{source} is a UMTModule checkpoint without a video_text head")
        options = spec.get("init_args", {})
        vision = typed(EncoderConfig, parts.hyper_parameters["encoder"]).model_config(parts.hints)
        text = typed(TextConfig, options["text"]) if options.get("text") else TEXT_CONFIGS[options.get("text_size",
                                                                                                        "bert_base")]
        text = dataclasses.replace(text, encoder_width=vision.embed_dim)
        embed = parts.rest[prefix + "tower.vision_proj.weight"].shape[0]
        model = VideoTextModel(VideoTextConfig(vision, text, embed))
        state = {"vision_encoder.encoder." + k: v for k, v in parts.encoder.items()}
        for key, value in parts.rest.items():
            if key.startswith(prefix + "pool_norm."):
                state["vision_encoder.head.fc_norm." + key.removeprefix(prefix + "pool_norm.")] = value
            elif key.startswith(prefix + "tower."):
                state[key.removeprefix(prefix + "tower.")] = value
        model.load_state_dict(state, strict=True)
        return model
    loaded = read_video_text_checkpoint(source, trust_pickle)
    width = loaded.state_dict["vision_encoder.encoder.patch_embed.proj.weight"].shape[0]
    name = next(n for n, c in VIDEO_TEXT_CONFIGS.items() if c.vision.embed_dim == width)
    return create_video_text_model(name, loaded)
