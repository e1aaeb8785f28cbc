"""Video-text head of UMT stage 2: the UTA / VTC / VTM / MLM training losses and whole-split retrieval evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from umt.data.text import tokenize
from umt.heads.alignment import AlignmentHead, alignment_layers
from umt.losses import mlm_loss, mlm_mask, uta_loss, video_text_similarity, vtc_loss, vtm_loss
from umt.masking import attention_mask
from umt.models.teacher import CLIPTeacher
from umt.models.video_text import VideoTextModel
from umt.retrieval import VideoTextRetrieval, ground_truth, rerank

LOSS_NAMES = ("uta", "vtc", "vtm", "mlm")


@dataclass(frozen=True)
class LossWeights:
    """Weights of the stage-2 losses (official ``criterion.loss_weight``: all 1 in pre-training; retrieval
    fine-tuning uses VTC and VTM only). A loss whose weight is 0 is not computed."""

    uta: float = 1.0
    vtc: float = 1.0
    vtm: float = 1.0
    mlm: float = 1.0

    def active(self) -> tuple[str, ...]:
        """Names of the losses with a non-zero weight."""
        return tuple(name for name in LOSS_NAMES if getattr(self, name))


@dataclass
class TextFeatures:
    """Encoded texts: ``states [T, L, H]`` of the text-only layers, ``mask [T, L]``, embeddings ``[T, E]``."""

    states: Tensor
    mask: Tensor
    embeddings: Tensor


class VideoTextHead(nn.Module):
    """Objectives and evaluation of a ``VideoTextModel`` (SPEC.md §3.5, §3.8).

    The head owns what the model does not: the tokenizer settings, the loss weights and, when UTA is on, the K
    alignment heads (official ``vision_encoder.clip_decoder``: Linear + LayerNorm eps 1e-5, normalised in the
    loss). Every method takes the model it works on.

    Args:
        tokenizer: the text side's tokenizer.
        max_length: tokens per caption (padding and truncation).
        weights: loss weights.
        embed_dim: video width C (the alignment heads' input).
        num_positions: token positions T*h*w of the training videos (the alignment heads' sinusoid table).
        depth: video encoder depth (which blocks the alignment heads read).
        teacher_dim: teacher feature width D; needed when ``weights.uta`` is non-zero.
        align_layers: K.
        video_mask_ratio / image_mask_ratio: share of each frame's tokens hidden from the student when the
            teacher picks them (videos / images, T = 1).
        mlm_probability: share of text tokens chosen for MLM.
        hard_negatives: VTM negatives drawn by similarity (official) or uniformly.
        k_test: candidates re-ranked by ITM per query in evaluation.
        eval_batch_size: texts encoded / pairs fused at once in evaluation.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int = 32, weights: LossWeights = LossWeights(),
                 *, embed_dim: int, num_positions: int, depth: int, teacher_dim: int | None = None,
                 align_layers: int = 6, video_mask_ratio: float = 0.8, image_mask_ratio: float = 0.5,
                 mlm_probability: float = 0.5, hard_negatives: bool = True, k_test: int = 128,
                 eval_batch_size: int = 32) -> None:
        super().__init__()
        if not weights.active():
            raise ValueError("every loss weight is 0: nothing to train")
        if weights.uta and teacher_dim is None:
            raise ValueError("the UTA loss needs a teacher (teacher_dim); set its weight to 0 without one")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.weights = weights
        self.video_mask_ratio = video_mask_ratio
        self.image_mask_ratio = image_mask_ratio
        self.mlm_probability = mlm_probability
        self.hard_negatives = hard_negatives
        self.k_test = k_test
        self.eval_batch_size = eval_batch_size
        self.return_layers: list[int] = []
        self.alignment: AlignmentHead | None = None
        if weights.uta:
            self.return_layers = alignment_layers(depth, align_layers)
            self.alignment = AlignmentHead(embed_dim, teacher_dim, num_positions, align_layers, norm_eps=1e-5,
                                           normalize=False)

    def tokenize(self, texts: Sequence[str], device: torch.device) -> tuple[Tensor, Tensor]:
        """``texts`` (cleaned, idempotently) -> ``input_ids``, ``attention_mask`` ``[B, max_length]`` on ``device``."""
        ids, mask = tokenize(self.tokenizer, texts, self.max_length)
        return ids.to(device), mask.to(device)

    def losses(self, model: VideoTextModel, batch: dict[str, Any], teacher: CLIPTeacher | None = None,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Weighted losses of one training batch and their sum (``"loss"``).

        Args:
            batch: ``{"video": [B, 3, T, H, W], "caption": list[str], "index": [B] (same = positive), ...}``.
            teacher: the frozen CLIP teacher (needed for UTA).
            generator: random source of masks, VTM negatives and MLM corruption (on the video's device).

        With UTA the teacher's attention masks the student's input (ratio by media: T = 1 is an image) and every
        loss uses the masked video; otherwise the video is whole and pooled per frame.
        """
        model.clamp_temperature()
        video, ids = batch["video"], batch["index"]
        input_ids, text_mask = self.tokenize(batch["caption"], video.device)
        mask = targets = None
        if self.alignment is not None:
            if teacher is None:
                raise ValueError("the UTA loss needs the teacher")
            mask, targets = self.teacher_targets(teacher, video, generator)
        out = model.vision_encoder.encoder(video, mask, self.return_layers)
        pooled = model.vision_encoder.head.pool(out, per_frame=mask is None)
        pooled = pooled if mask is None else pooled[:, None]
        text_states = model.encode_text(input_ids, text_mask)
        video_emb, text_emb = model.video_embedding(pooled), model.text_embedding(text_states)
        losses: dict[str, Tensor] = {}
        if self.alignment is not None:
            losses["uta"] = uta_loss(self.alignment(out, mask), targets)
        if self.weights.vtc:
            losses["vtc"] = vtc_loss(video_emb, text_emb, ids, model.temp)
        if self.weights.vtm:
            def match_logits(video_index: Tensor, text_index: Tensor) -> Tensor:
                return model.itm_logits(out.tokens[video_index], text_states[text_index], text_mask[text_index])

            sim = video_text_similarity(video_emb, text_emb, model.temp)
            losses["vtm"] = vtm_loss(match_logits, sim, ids, self.hard_negatives, generator)
        if self.weights.mlm:
            t = self.tokenizer
            corrupted, labels = mlm_mask(input_ids, model.config.text.vocab_size, t.mask_token_id, t.pad_token_id,
                                         t.cls_token_id, self.mlm_probability, generator)
            losses["mlm"] = mlm_loss(model.mlm_logits(corrupted, text_mask, out.tokens), labels)
        weighted = {name: getattr(self.weights, name) * value for name, value in losses.items()}
        return weighted | {"loss": sum(weighted.values())}

    def teacher_targets(self, teacher: CLIPTeacher, video: Tensor,
                        generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """The teacher's attention mask (bool ``[B, T*h*w]``, True = hidden) and its K layers at the visible
        positions ``[K, B, N_vis, D]``."""
        with torch.no_grad():
            target = teacher(video)
            frames = video.shape[2]
            ratio = self.image_mask_ratio if frames == 1 else self.video_mask_ratio
            mask = attention_mask(target.cls_attention.float(), frames, ratio, generator)
            features = target.features
            visible = features[:, ~mask].reshape(len(features), video.shape[0], -1, features.shape[-1])
        return mask, visible

    @torch.no_grad()
    def media_features(self, model: VideoTextModel, video: Tensor) -> tuple[Tensor, Tensor]:
        """Evaluation features of whole media ``[B, 3, T, H, W]``: tokens ``[B, N, C]`` and per-frame embeddings
        ``[B, T, E]`` (normalised)."""
        tokens, pooled = model.encode_video(video, per_frame=True)
        return tokens, model.video_embedding(pooled)

    @torch.no_grad()
    def text_features(self, model: VideoTextModel, texts: Sequence[str], device: torch.device) -> TextFeatures:
        """Encode ``texts`` (cleaned as captions are) in batches of ``eval_batch_size``."""
        parts = []
        for start in range(0, len(texts), self.eval_batch_size):
            ids, mask = self.tokenize(texts[start : start + self.eval_batch_size], device)
            states = model.encode_text(ids, mask)
            parts.append((states, mask, model.text_embedding(states)))
        states, masks, embeddings = (torch.cat(p) for p in zip(*parts, strict=True))
        return TextFeatures(states, masks, embeddings)

    @torch.no_grad()
    def evaluate(self, model: VideoTextModel, tokens: Tensor, video_emb: Tensor, texts: TextFeatures,
                 text_to_videos: Sequence[int | Sequence[int]], rank: int = 0,
                 world_size: int = 1) -> dict[str, dict[str, Tensor]]:
        """Retrieval metrics of a whole split: ``"itc"`` (contrastive similarities only) and ``"itm"`` (each
        query's top ``k_test`` re-ranked by the raw ITM match logit, both directions).

        Args:
            tokens: every media's tokens ``[V, N, C]`` (may stay on the CPU; moved per mini-batch).
            video_emb: every media's per-frame embeddings ``[V, T, E]``.
            texts: every text's features (``text_features``).
            text_to_videos: each text's ground-truth media position(s).
            rank, world_size: this process's share of the re-ranked queries (rows ``rank::world_size``);
                the rank states merge across processes in the metric.

        Returns:
            ``{"itc": recalls, "itm": recalls}`` with the keys of ``umt.retrieval.recalls``.
        """
        device = texts.embeddings.device
        itc = video_text_similarity(video_emb.to(device), texts.embeddings)
        positives = ground_truth(text_to_videos, itc.shape[0]).to(device)
        itc_metric = VideoTextRetrieval(positives).to(device)
        itm_metric = VideoTextRetrieval(positives).to(device)

        def itm_score(video_index: Tensor, text_index: Tensor) -> Tensor:
            memory = tokens[video_index.to(tokens.device)].to(device)
            return model.itm_logits(memory, texts.states[text_index], texts.mask[text_index])[:, 1]

        for direction, table in (("v2t", itc), ("t2v", itc.t())):
            queries = torch.arange(rank, table.shape[0], world_size, device=device)
            itc_metric.update(table[queries], queries, direction)
            if len(queries):
                scores = rerank(itc, itm_score, direction, self.k_test, queries, self.eval_batch_size)
                itm_metric.update(scores, queries, direction)
        return {"itc": itc_metric.compute(), "itm": itm_metric.compute()}
