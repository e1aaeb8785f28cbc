"""TextEncoder: the UMT BERT (text-only layers, then fusion layers with cross-attention to video tokens, MLM head)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import (
    BertAttention,
    BertEmbeddings,
    BertIntermediate,
    BertLayer,
    BertOnlyMLMHead,
    BertOutput,
)

logger = logging.getLogger("umt")

_NOT_LOADED = ("bert.pooler.", "cls.seq_relationship.", "cls.predictions.decoder.")
"""Keys of Hugging Face BERT files that the text encoder has no use for (pooler, next-sentence head) or ties
to other weights (the MLM decoder is the word embedding table and ``cls.predictions.bias``)."""


@dataclass(frozen=True)
class TextConfig:
    """Sizes of the UMT text encoder (a BERT whose layers from ``fusion_layer`` on cross-attend to video).

    Attributes:
        vocab_size: word-piece vocabulary size.
        hidden_size: token width H.
        num_layers: BERT layers in all (text-only plus fusion).
        num_heads: attention heads.
        intermediate_size: FFN hidden width.
        max_positions: learned position table length.
        fusion_layer: first layer with cross-attention; layers below it see no video.
        encoder_width: width of the video tokens the fusion layers attend to (vision C).
        layer_norm_eps: LayerNorm epsilon.
        dropout: hidden and attention-probability dropout.
        type_vocab_size: token-type table length.
        pad_token_id: id of [PAD].
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_positions: int = 512
    fusion_layer: int = 9
    encoder_width: int = 768
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    type_vocab_size: int = 2
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.fusion_layer <= self.num_layers:
            raise ValueError(f"fusion_layer={self.fusion_layer} must lie in [0, num_layers={self.num_layers}]")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")

    def bert_config(self) -> BertConfig:
        """The equivalent ``transformers.BertConfig`` (exact GELU, absolute positions, SDPA attention)."""
        return BertConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, intermediate_size=self.intermediate_size, hidden_act="gelu",
            hidden_dropout_prob=self.dropout, attention_probs_dropout_prob=self.dropout,
            max_position_embeddings=self.max_positions, type_vocab_size=self.type_vocab_size,
            layer_norm_eps=self.layer_norm_eps, pad_token_id=self.pad_token_id, attn_implementation="sdpa",
        )


TEXT_CONFIGS: dict[str, TextConfig] = {
    "bert_base": TextConfig(),
    "bert_large": TextConfig(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096,
                             fusion_layer=19, encoder_width=1024),
}
"""The official text sides: BERT-base with UMT-B/16 (fusion from layer 9), BERT-large with UMT-L/16 (from 19)."""


class FusionLayer(nn.Module):
    """BERT layer with cross-attention: self-attention, cross-attention to video tokens, FFN.
    ``[B, L, H]`` text states and ``[B, N, Cv]`` video tokens -> ``[B, L, H]``."""

    def __init__(self, config: BertConfig, encoder_width: int) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.crossattention = BertAttention(config, is_cross_attention=True)
        cross = self.crossattention.self
        cross.key = nn.Linear(encoder_width, cross.all_head_size)
        cross.value = nn.Linear(encoder_width, cross.all_head_size)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, states: Tensor, attention_mask: Tensor | None, video: Tensor,
                video_mask: Tensor | None) -> Tensor:
        states, _ = self.attention(states, attention_mask)
        states, _ = self.crossattention(states, encoder_hidden_states=video, encoder_attention_mask=video_mask)
        return self.output(self.intermediate(states), states)


class BertEncoderLayers(nn.Module):
    """Holder of the layer list, so that keys read ``encoder.layer.{i}.*`` as in BERT."""

    def __init__(self, config: TextConfig, bert: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            BertLayer(bert) if i < config.fusion_layer else FusionLayer(bert, config.encoder_width)
            for i in range(config.num_layers)
        )


class BertBackbone(nn.Module):
    """Embeddings plus layers, keyed ``embeddings.*`` and ``encoder.layer.{i}.*`` like ``BertModel``."""

    def __init__(self, config: TextConfig, bert: BertConfig) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(bert)
        self.encoder = BertEncoderLayers(config, bert)


def additive_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """``[B, L]`` keep-mask (1 = attend) -> additive ``[B, 1, 1, L]`` (0 or the dtype's minimum)."""
    if mask is None:
        return None
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class TextEncoder(nn.Module):
    """The UMT text encoder, keyed like the official ``BertForMaskedLM`` (``bert.*``, ``cls.*``).

    Layers ``[0, fusion_layer)`` are text-only; layers ``[fusion_layer, num_layers)`` add cross-attention to
    video tokens. The MLM decoder shares its weight with the word embeddings (and its bias with
    ``cls.predictions.bias``).
    """

    def __init__(self, config: TextConfig, mlm_head: bool = True) -> None:
        """``mlm_head=False`` leaves out ``cls.*`` (the official downstream ``BertModel``, e.g. video QA)."""
        super().__init__()
        self.config = config
        bert = config.bert_config()
        self.bert = BertBackbone(config, bert)
        self.cls = BertOnlyMLMHead(bert) if mlm_head else None
        self.apply(_init_weights)
        if self.cls is not None:
            predictions = self.cls.predictions
            predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
            predictions.decoder.bias = predictions.bias

    def check_text(self, input_ids: Tensor, attention_mask: Tensor) -> None:
        """Raise ``ValueError`` unless ids and mask are equal-shaped ``[B, L]`` with L <= ``max_positions``."""
        if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(f"input_ids and attention_mask must both be [B, L]; got {list(input_ids.shape)} and "
                             f"{list(attention_mask.shape)}")
        if input_ids.shape[1] > self.config.max_positions:
            raise ValueError(f"text length {input_ids.shape[1]} exceeds max_positions={self.config.max_positions}")

    def forward_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Text-only layers: ``input_ids [B, L]``, ``attention_mask [B, L]`` (1 = token) -> states ``[B, L, H]``."""
        self.check_text(input_ids, attention_mask)
        states = self.bert.embeddings(input_ids=input_ids)
        mask = additive_mask(attention_mask, states.dtype)
        for layer in self.bert.encoder.layer[: self.config.fusion_layer]:
            states = layer(states, mask)
        return states

    def forward_fusion(self, text_states: Tensor, attention_mask: Tensor, video_tokens: Tensor,
                       video_mask: Tensor | None = None) -> Tensor:
        """Fusion layers: text states ``[B, L, H]`` (from ``forward_text``) with ``attention_mask [B, L]``
        cross-attend to ``video_tokens [B, N, Cv]`` (``video_mask [B, N]``, 1 = attend; None = all)
        -> ``[B, L, H]``."""
        batch, length = text_states.shape[:2]
        if attention_mask.shape != (batch, length):
            raise ValueError(f"attention_mask must be [{batch}, {length}], got {list(attention_mask.shape)}")
        width = self.config.encoder_width
        if video_tokens.ndim != 3 or video_tokens.shape[0] != batch or video_tokens.shape[2] != width:
            raise ValueError(f"video_tokens must be [{batch}, N, {width}] (one video per text), "
                             f"got {list(video_tokens.shape)}")
        if video_mask is not None and video_mask.shape != video_tokens.shape[:2]:
            raise ValueError(f"video_mask must be {list(video_tokens.shape[:2])}, got {list(video_mask.shape)}")
        mask = additive_mask(attention_mask, text_states.dtype)
        memory_mask = additive_mask(video_mask, text_states.dtype)
        for layer in self.bert.encoder.layer[self.config.fusion_layer:]:
            text_states = layer(text_states, mask, video_tokens, memory_mask)
        return text_states

    def mlm_logits(self, input_ids: Tensor, attention_mask: Tensor, video_tokens: Tensor,
                   video_mask: Tensor | None = None) -> Tensor:
        """All layers then the MLM head: ``input_ids [B, L]`` with ``video_tokens [B, N, Cv]`` -> ``[B, L, vocab]``."""
        if self.cls is None:
            raise RuntimeError("this text encoder was built without its MLM head (mlm_head=False)")
        states = self.forward_text(input_ids, attention_mask)
        return self.cls(self.forward_fusion(states, attention_mask, video_tokens, video_mask))

    def load_bert(self, path: str | Path) -> list[str]:
        """Load the weights of a Hugging Face BERT folder (``model.safetensors`` or ``pytorch_model.bin`` of a
        ``BertModel`` or ``BertForMaskedLM``; legacy ``LayerNorm.gamma/beta`` names accepted) into the matching
        keys, as the official initialisation does.

        Returns the keys initialised fresh (cross-attention; the MLM transform if the file has none).

        Raises:
            FileNotFoundError: no weights file. ValueError: a key of the file has no place here, or shapes differ.
        """
        state = _read_bert_weights(Path(path))
        target = self.state_dict()
        mapped: dict[str, Tensor] = {}
        for key, value in state.items():
            name = key if key.startswith(("bert.", "cls.")) else "bert." + key
            name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name))
            if name.endswith("position_ids") or name.startswith(_NOT_LOADED) or (
                    self.cls is None and name.startswith("cls.")):
                continue
            if name not in target:
                raise ValueError(f"{path}: weight {key} has no place in the text encoder")
            if value.shape != target[name].shape:
                raise ValueError(f"{path}: {key} is {list(value.shape)}, the text encoder has "
                                 f"{list(target[name].shape)}; build it with this BERT's sizes")
            mapped[name] = value
        tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
        fresh = sorted(set(target) - set(mapped) - tied)
        self.load_state_dict({**target, **mapped}, strict=True)
        logger.info("loaded BERT weights from %s; initialised fresh: %d keys", path, len(fresh))
        return fresh


def _read_bert_weights(folder: Path) -> dict[str, Tensor]:
    """The tensors of a Hugging Face model folder (safetensors preferred)."""
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} holds no model.safetensors or pytorch_model.bin")


def _init_weights(module: nn.Module) -> None:
    """BERT init: Linear and Embedding normal(0.02) (zero bias, zero padding row), LayerNorm 1/0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        nn.init.zeros_(module.weight[module.padding_idx])
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
