"""VideoQAModel: the official UMT_QA (question encoder over all video tokens, BERT answer decoder, answer ranking)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.bert.modeling_bert import BertLMHeadModel

from umt.checkpoints import Checkpoint
from umt.models.config import MODEL_CONFIGS, ModelConfig
from umt.models.text import TEXT_CONFIGS, TextConfig, TextEncoder
from umt.models.vit import VideoViT
from umt.qa_checkpoints import load_qa_weights, read_qa_checkpoint

IGNORE_INDEX = -100
"""Label of positions left out of the language-model loss (pads), as ``F.cross_entropy`` expects."""


@dataclass(frozen=True)
class QAConfig:
    """Sizes of a video-QA model.

    Attributes:
        vision: the video encoder (stage-2 layout: ``final_norm=True``, ``pos_embed="extend"``, ``num_classes=0``).
        text: the question encoder; the answer decoder has ``text.num_layers - text.fusion_layer`` layers of the
            same width. ``text.encoder_width`` must equal ``vision.embed_dim``.
        k: answers of the list re-scored per question at inference (official 128).
        cls_token_id: the answers' first token and the decoder's start token ([CLS]).
    """

    vision: ModelConfig
    text: TextConfig
    k: int = 128
    cls_token_id: int = 101

    def __post_init__(self) -> None:
        v, t = self.vision, self.text
        problems = []
        if not v.final_norm or v.pos_embed != "extend" or v.num_classes != 0:
            problems.append("vision must be a stage-2 encoder: final_norm=True, pos_embed='extend', num_classes=0")
        if t.encoder_width != v.embed_dim:
            problems.append(f"text.encoder_width={t.encoder_width} differs from vision.embed_dim={v.embed_dim}")
        if t.fusion_layer >= t.num_layers:
            problems.append(f"text.fusion_layer={t.fusion_layer} leaves no layer for the answer decoder")
        if self.k < 1:
            problems.append(f"k={self.k} must be positive")
        if problems:
            raise ValueError("invalid video-QA config: " + "; ".join(problems))

    @property
    def decoder_layers(self) -> int:
        """Layers of the answer decoder (3 for BERT-base with fusion from 9, 5 for BERT-large from 19)."""
        return self.text.num_layers - self.text.fusion_layer

    def replace_vision(self, **overrides: object) -> QAConfig:
        """A copy whose vision config has ``overrides`` (e.g. ``num_frames=8``)."""
        return dataclasses.replace(self, vision=self.vision.replace(**overrides))


def _qa_vision(name: str) -> ModelConfig:
    return MODEL_CONFIGS[name].replace(num_frames=12, final_norm=True, pos_embed="extend", num_classes=0)


QA_CONFIGS: dict[str, QAConfig] = {
    "umt_b16": QAConfig(_qa_vision("umt_b16"), TEXT_CONFIGS["bert_base"]),
    "umt_l16": QAConfig(_qa_vision("umt_l16"), TEXT_CONFIGS["bert_large"]),
}
"""Official QA sizes (12 frames, 224 px): UMT-B/16 with BERT-base, UMT-L/16 with BERT-large."""


class VisionEncoder(nn.Module):
    """Holder of the video encoder, so that keys read ``encoder.*`` as in the official vision encoder
    (the QA model has no ``pool_norm``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.encoder = VideoViT(config)


class QuestionAnswerer(nn.Module):
    """Question encoder (BERT tower in multi-modal mode) and answer decoder (BERT LM head model of
    ``text.num_layers - text.fusion_layer`` layers), keyed ``text_encoder.*`` / ``text_decoder.*`` as the official
    ``UMT_QA``; the video tokens come from outside.

    Args:
        text: the question encoder's sizes (``encoder_width`` = the video width).
        k: answers of the list re-scored per question at inference.
        cls_token_id: the answers' first token and the decoder's start token.
    """

    def __init__(self, text: TextConfig, k: int = 128, cls_token_id: int = 101) -> None:
        super().__init__()
        if text.fusion_layer >= text.num_layers:
            raise ValueError(f"text.fusion_layer={text.fusion_layer} leaves no layer for the answer decoder")
        self.text_config, self.k, self.cls_token_id = text, k, cls_token_id
        self.text_encoder = TextEncoder(text, mlm_head=False)
        decoder = text.bert_config()
        decoder.num_hidden_layers = text.num_layers - text.fusion_layer
        decoder.is_decoder = True
        decoder.add_cross_attention = True
        decoder.use_cache = False
        self.text_decoder = BertLMHeadModel(decoder)

    def encode_question(self, input_ids: Tensor, attention_mask: Tensor, video_tokens: Tensor) -> Tensor:
        """Question states ``[Q, L, H]``: ``input_ids [Q, L]`` (``attention_mask [Q, L]``) through the text layers,
        then the fusion layers cross-attending to every token of ``video_tokens [Q, N, C]``."""
        states = self.text_encoder.forward_text(input_ids, attention_mask)
        return self.text_encoder.forward_fusion(states, attention_mask, video_tokens)

    def decoder_logits(self, answer_ids: Tensor, answer_mask: Tensor | None, question_states: Tensor,
                       question_mask: Tensor) -> Tensor:
        """Next-token logits ``[A, La, vocab]`` of ``answer_ids [A, La]`` (``answer_mask [A, La]``, None = all),
        causal, cross-attending to ``question_states [A, L, H]`` (``question_mask [A, L]``)."""
        out = self.text_decoder(input_ids=answer_ids, attention_mask=answer_mask,
                                encoder_hidden_states=question_states, encoder_attention_mask=question_mask,
                                use_cache=False)
        return out.logits

    def sequence_nll(self, answer_ids: Tensor, answer_mask: Tensor, question_states: Tensor,
                     question_mask: Tensor) -> Tensor:
        """Teacher-forced negative log-likelihood of each answer, summed over its tokens after the first
        ([PAD] ids ignored, as the official loss).

        Args:
            answer_ids: ``[A, La]`` "[CLS] answer [SEP]" ids.
            answer_mask: ``[A, La]``, 1 = token.
            question_states: ``[A, L, H]`` states of each answer's question.
            question_mask: ``[A, L]``.

        Returns:
            ``[A]`` summed token NLL.
        """
        logits = self.decoder_logits(answer_ids, answer_mask, question_states, question_mask)[:, :-1]
        targets = answer_ids[:, 1:].masked_fill(answer_ids[:, 1:] == self.text_config.pad_token_id, IGNORE_INDEX)
        nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
        return nll.sum(1)

    def answer_loss(self, question_states: Tensor, question_mask: Tensor, answer_ids: Tensor, answer_mask: Tensor,
                    answers_per_question: Tensor, weights: Tensor) -> Tensor:
        """The official training loss: sum of weight x answer NLL, divided by the number of questions.

        Args:
            question_states: ``[Q, L, H]``.
            question_mask: ``[Q, L]``.
            answer_ids: ``[A, La]`` target answers ("[CLS] answer [SEP]"), grouped by question.
            answer_mask: ``[A, La]``.
            answers_per_question: ``[Q]`` answers of each question (summing to A).
            weights: ``[A]`` share of each answer among its question's annotations.
        """
        states = question_states.repeat_interleave(answers_per_question, 0)
        mask = question_mask.repeat_interleave(answers_per_question, 0)
        nll = self.sequence_nll(answer_ids, answer_mask, states, mask)
        return (weights * nll).sum() / question_states.shape[0]

    def first_token_logits(self, question_states: Tensor, question_mask: Tensor) -> Tensor:
        """Logits ``[Q, vocab]`` of the first answer token: one decoder step from [CLS]."""
        start = question_states.new_full((question_states.shape[0], 1), self.cls_token_id, dtype=torch.long)
        return self.decoder_logits(start, None, question_states, question_mask)[:, 0]

    def rank_answers(self, question_states: Tensor, question_mask: Tensor, answer_ids: Tensor, answer_mask: Tensor,
                     k: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Rank a closed answer list for each question, as the official ``rank_answer``.

        The k answers whose first token is most probable are re-scored by first-token log-probability plus
        the answer's teacher-forced log-likelihood; a softmax over the k gives their probabilities.

        Args:
            question_states: ``[Q, L, H]``.
            question_mask: ``[Q, L]``.
            answer_ids: ``[A, La]`` every answer of the list ("[CLS] answer [SEP]").
            answer_mask: ``[A, La]``.
            k: answers re-scored (default ``self.k``; at most A).

        Returns:
            ``topk_ids [Q, k]`` (rows of the answer list, best first), ``topk_probs [Q, k]``, and the first-token
            logits ``[Q, vocab]``.
        """
        k = min(k or self.k, answer_ids.shape[0])
        questions = question_states.shape[0]
        first_logits = self.first_token_logits(question_states, question_mask)
        first_probs = first_logits.softmax(-1).index_select(1, answer_ids[:, 1])
        top_probs, top_ids = first_probs.topk(k, dim=1)
        nll = self.sequence_nll(answer_ids[top_ids.flatten()], answer_mask[top_ids.flatten()],
                                question_states.repeat_interleave(k, 0), question_mask.repeat_interleave(k, 0))
        scores = top_probs.log() - nll.view(questions, k)
        probs, order = scores.softmax(-1).topk(k, dim=1)
        return top_ids.gather(1, order), probs, first_logits


class VideoQAModel(QuestionAnswerer):
    """Video encoder, question encoder and answer decoder, keyed like the official ``UMT_QA``.

    Typical use: ``tokens = model.encode_video(video)``; ``states = model.encode_question(ids, mask, tokens)``;
    ``model.answer_loss(...)`` trains, ``model.rank_answers(...)`` ranks a closed answer list.
    """

    def __init__(self, config: QAConfig) -> None:
        super().__init__(config.text, config.k, config.cls_token_id)
        self.config = config
        self.vision_encoder = VisionEncoder(config.vision)

    def encode_video(self, video: Tensor) -> Tensor:
        """All tokens of ``video [B, 3, T, H, W]`` after the final norm, ``[B, T*h*w, C]`` (no mask, no pooling)."""
        return self.vision_encoder.encoder(video).tokens


def create_qa_model(
    config: str | QAConfig = "umt_b16",
    checkpoint: str | Path | Mapping[str, Any] | Checkpoint | None = None,
    *,
    trust_pickle: bool = False,
) -> VideoQAModel:
    """Build a video-QA model (``umt_b16``, ``umt_l16`` or a ``QAConfig``) and load, strictly, an official QA
    fine-tuned file or a stage-2 file (initialised the official way); what is dropped by design is logged.

    Args:
        config: a name of ``QA_CONFIGS`` or a config.
        checkpoint: a file path, a loaded checkpoint object, or a ``Checkpoint`` from ``read_qa_checkpoint``.
        trust_pickle: allow files that hold Python objects besides tensors (only for trusted sources).

    Raises:
        KeyError: unknown name. CheckpointError: unreadable file, another family, or keys/shapes that differ.
    """
    if isinstance(config, str):
        if config not in QA_CONFIGS:
            raise KeyError(f"unknown video-QA model {config!r}; known: {', '.join(sorted(QA_CONFIGS))}")
        config = QA_CONFIGS[config]
    model = VideoQAModel(config)
    if checkpoint is not None:
        loaded = checkpoint if isinstance(checkpoint, Checkpoint) else read_qa_checkpoint(checkpoint, trust_pickle)
        load_qa_weights(model, loaded)
    return model
