"""Video-text head of UMT stage 2: the text tower, the VTC / VTM / MLM losses and whole-split retrieval."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from umt.checkpoints import TIED_KEYS, CheckpointParts, check_fit, video_text_heads
from umt.data.text import load_tokenizer, tokenize
from umt.heads.base import Batch, EncoderStep, EvalContext, Head, HeadContext, ParamGroup, load_module_part
from umt.losses import mlm_loss, mlm_mask, video_text_similarity, vtc_loss, vtm_loss
from umt.models.text import TEXT_CONFIGS, TextConfig
from umt.models.video_text import VideoTextTower
from umt.models.vit import EncoderOutput
from umt.retrieval import VideoTextRetrieval, ground_truth, rerank

LOSS_NAMES = ("vtc", "vtm", "mlm")


@dataclass(frozen=True)
class LossWeights:
    """Weights of the video-text losses (official ``criterion.loss_weight``: all 1 in pre-training; retrieval
    fine-tuning uses VTC and VTM only). A loss whose weight is 0 is not computed. UTA is the ``alignment`` head's.

    Attributes:
        vtc: video-text contrastive loss.
        vtm: video-text matching loss (hard negatives).
        mlm: masked language modelling with the video as cross-attention memory.
    """

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


class VideoTextHead(Head):
    """Stage-2 video-text learning and retrieval (SPEC.md §3.5, §3.8): the BERT tower with fusion layers, the
    projections, the ITM head and the temperature (``tower``), ``pool_norm`` over the video tokens, the VTC / VTM /
    MLM losses, and whole-split retrieval (ITC ranks, ITM re-ranking of the top ``k_test``).

    With a teacher the module masks the video and every loss uses the masked tokens (pooled as one); without, the
    video is whole and pooled per frame. Training batches: ``{"video", "caption": list[str], "index": [B] (same id =
    positive)}``; evaluation batches ``{"video", "index": [B] media positions}`` with the data module's
    ``retrieval_texts(stage)`` and ``retrieval_ground_truth(stage)``. Logged: ITM re-ranked recalls
    (``txt_r*``: video->text, ``img_r*``: text->video, ``r_mean``) and the ITC-only ones as ``itc_*``.

    Args:
        context: what the module knows (the video width).
        text_size: BERT size, ``bert_base`` or ``bert_large``.
        text: full BERT sizes instead of ``text_size`` (e.g. a small tower); ``encoder_width`` follows the video.
        bert: a Hugging Face BERT folder to initialise the text tower from (cross-attention starts fresh).
        tokenizer: tokenizer name or folder.
        max_length: tokens per text (official: 32 in pre-training).
        embed_dim: width of the contrastive projections (official: 512 for B, 768 for L).
        temp: initial temperature.
        weights: the losses' weights.
        mlm_probability: share of text tokens chosen for MLM.
        hard_negatives: VTM negatives drawn by similarity (official) or uniformly.
        k_test: candidates re-ranked by ITM per query in evaluation.
        eval_batch_size: texts encoded / pairs fused at once in evaluation.
        norm_eps: epsilon of ``pool_norm``.
        text_lr_scale: lr factor of the text tower.
    """

    def __init__(self, context: HeadContext, text_size: str = "bert_base", text: TextConfig | None = None,
                 bert: str | None = None, tokenizer: str = "bert-base-uncased", max_length: int = 32,
                 embed_dim: int = 512, temp: float = 0.07, weights: LossWeights = LossWeights(),
                 mlm_probability: float = 0.5, hard_negatives: bool = True, k_test: int = 128,
                 eval_batch_size: int = 32, norm_eps: float = 1e-6, text_lr_scale: float = 1.0) -> None:
        super().__init__(context)
        if text is None:
            if text_size not in TEXT_CONFIGS:
                raise ValueError(f"unknown text_size {text_size!r}; known: {', '.join(TEXT_CONFIGS)}")
            text = TEXT_CONFIGS[text_size]
        text = dataclasses.replace(text, encoder_width=context.embed_dim)
        self.tokenizer = load_tokenizer(tokenizer)
        self.max_length = max_length
        self.weights = weights
        self.mlm_probability = mlm_probability
        self.hard_negatives = hard_negatives
        self.k_test = k_test
        self.eval_batch_size = eval_batch_size
        self.text_lr_scale = text_lr_scale
        self.pool_norm = nn.LayerNorm(context.embed_dim, eps=norm_eps)
        self.tower = VideoTextTower(text, embed_dim, temp)
        if bert is not None:
            self.tower.text_encoder.load_bert(bert)
        self.media: list[tuple[Tensor, Tensor, Tensor]] = []

    def tokenize(self, texts: Sequence[str], device: torch.device) -> tuple[Tensor, Tensor]:
        """``texts`` (cleaned, idempotently) -> ``input_ids``, ``attention_mask`` ``[B, max_length]`` on ``device``."""
        ids, mask = tokenize(self.tokenizer, texts, self.max_length)
        return ids.to(device), mask.to(device)

    def pool(self, out: EncoderOutput, per_frame: bool) -> Tensor:
        """``pool_norm`` of the token mean ``[B, 1, C]``, or per frame ``[B, T, C]``."""
        pooled = self.pool_norm(out.mean(per_frame))
        return pooled if per_frame else pooled[:, None]

    def on_train_step_start(self) -> None:
        self.tower.clamp_temperature()

    def train_logs(self) -> dict[str, Tensor]:
        return {"temp": self.tower.temp.detach()}

    def losses(self, step: EncoderStep, batch: Batch) -> dict[str, Tensor]:
        """The weighted VTC, VTM and MLM losses of one batch."""
        if not self.weights.active():
            raise ValueError("every video_text loss weight is 0: nothing to train; give the head a loss weight of 0 "
                             "(model.loss_weights) to evaluate only")
        tower, out, generator = self.tower, step.output, step.generator
        device = out.tokens.device
        ids = batch["index"]
        input_ids, text_mask = self.tokenize(batch["caption"], device)
        pooled = self.pool(out, per_frame=step.mask is None)
        text_states = tower.encode_text(input_ids, text_mask)
        video_emb, text_emb = tower.video_embedding(pooled), tower.text_embedding(text_states)
        losses: dict[str, Tensor] = {}
        if self.weights.vtc:
            losses["vtc"] = vtc_loss(video_emb, text_emb, ids, tower.temp)
        if self.weights.vtm:
            def match_logits(video_index: Tensor, text_index: Tensor) -> Tensor:
                return tower.itm_logits(out.tokens[video_index], text_states[text_index], text_mask[text_index])

            sim = video_text_similarity(video_emb, text_emb, tower.temp)
            losses["vtm"] = vtm_loss(match_logits, sim, ids, self.hard_negatives, generator)
        if self.weights.mlm:
            t = self.tokenizer
            corrupted, labels = mlm_mask(input_ids, tower.text_config.vocab_size, t.mask_token_id, t.pad_token_id,
                                         t.cls_token_id, self.mlm_probability, generator)
            losses["mlm"] = mlm_loss(tower.mlm_logits(corrupted, text_mask, out.tokens), labels)
        return {name: getattr(self.weights, name) * value for name, value in losses.items()}

    def describe(self) -> dict[str, object]:
        return {"tokenizer": self.tokenizer.name_or_path, "max_length": self.max_length}

    def param_groups(self) -> list[ParamGroup]:
        if self.text_lr_scale == 1.0:
            return []
        return [ParamGroup(list(self.tower.text_encoder.parameters()), self.text_lr_scale)]

    def media_features(self, out: EncoderOutput) -> tuple[Tensor, Tensor]:
        """Evaluation features of whole media: tokens ``[B, N, C]`` and per-frame embeddings ``[B, T, E]``."""
        return out.tokens, self.tower.video_embedding(self.pool(out, per_frame=True))

    def eval_epoch_start(self, stage: str) -> None:
        self.media = []

    def eval_step(self, step: EncoderStep, batch: Batch, stage: str) -> dict[str, Tensor]:
        """Keep this batch's media features for the retrieval at the end of the epoch."""
        tokens, embeddings = self.media_features(step.output)
        self.media.append((tokens, embeddings, batch["index"]))
        return {}

    def eval_epoch_end(self, context: EvalContext) -> dict[str, Tensor | float]:
        """Retrieval over the whole split: re-ranked recalls and the ITC-only ones (``itc_*``)."""
        data = context.datamodule
        if not self.media or not hasattr(data, "retrieval_texts"):
            return {}
        tokens, embeddings = self.gather_media(context)
        self.media = []
        texts = self.text_features(data.retrieval_texts(context.stage), context.device)
        report = self.evaluate(tokens, embeddings, texts, data.retrieval_ground_truth(context.stage), context.rank,
                               context.world_size)
        return dict(report["itm"]) | {f"itc_{k}": v for k, v in report["itc"].items()}

    def gather_media(self, context: EvalContext) -> tuple[Tensor, Tensor]:
        """Every process's media features in media order, each once: tokens ``[V, N, C]`` (on the CPU) and
        per-frame embeddings ``[V, T, E]``.

        Raises:
            ValueError: a media position in ``0..V-1`` was never seen (e.g. ``limit_val_batches`` was set).
        """
        tokens, embeddings, index = (torch.cat(part) for part in zip(*self.media, strict=True))
        if context.world_size > 1:
            tokens, embeddings, index = (context.gather(t).flatten(0, 1) for t in (tokens, embeddings, index))
        count = int(index.max()) + 1
        seen = torch.zeros(count, dtype=torch.bool, device=index.device).index_fill_(0, index, True)
        if not seen.all():
            raise ValueError(f"retrieval needs every media of the split: {int((~seen).sum())} of {count} positions "
                             "were not evaluated")
        ordered_tokens = tokens.new_empty(count, *tokens.shape[1:]).index_copy_(0, index, tokens)
        ordered_embeddings = embeddings.new_empty(count, *embeddings.shape[1:]).index_copy_(0, index, embeddings)
        return ordered_tokens.cpu(), ordered_embeddings

    @torch.no_grad()
    def text_features(self, texts: Sequence[str], device: torch.device) -> TextFeatures:
        """Encode ``texts`` (cleaned as captions are) in batches of ``eval_batch_size``."""
        parts = []
        for start in range(0, len(texts), self.eval_batch_size):
            ids, mask = self.tokenize(texts[start : start + self.eval_batch_size], device)
            states = self.tower.encode_text(ids, mask)
            parts.append((states, mask, self.tower.text_embedding(states)))
        states, masks, embeddings = (torch.cat(p) for p in zip(*parts, strict=True))
        return TextFeatures(states, masks, embeddings)

    @torch.no_grad()
    def evaluate(self, tokens: Tensor, video_emb: Tensor, texts: TextFeatures,
                 text_to_videos: Sequence[int | Sequence[int]], rank: int = 0,
                 world_size: int = 1) -> dict[str, dict[str, Tensor]]:
        """Retrieval metrics of a whole split: ``"itc"`` (contrastive similarities only) and ``"itm"`` (each
        query's top ``k_test`` re-ranked by the raw ITM match logit, both directions).

        Args:
            tokens: every media's tokens ``[V, N, C]`` (may stay on the CPU; moved per mini-batch).
            video_emb: every media's per-frame embeddings ``[V, T, E]``.
            texts: every text's features (``text_features``).
            text_to_videos: each text's ground-truth media position(s).
            rank: this process's rank; its share of the re-ranked queries is rows ``rank::world_size`` (the rank
                states merge across processes in the metric).
            world_size: processes.

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
            return self.tower.itm_logits(memory, texts.states[text_index], texts.mask[text_index])[:, 1]

        for direction, table in (("v2t", itc), ("t2v", itc.t())):
            queries = torch.arange(rank, table.shape[0], world_size, device=device)
            itc_metric.update(table[queries], queries, direction)
            if len(queries):
                scores = rerank(itc, itm_score, direction, self.k_test, queries, self.eval_batch_size)
                itm_metric.update(scores, queries, direction)
        return {"itc": itc_metric.compute(), "itm": itm_metric.compute()}

    def predict(self, step: EncoderStep, batch: Batch) -> Tensor:
        """Per-frame video embeddings ``[B, T, E]`` (normalised)."""
        return self.media_features(step.output)[1]

    def load_state(self, parts: CheckpointParts) -> tuple[set[str], list[str]]:
        """The text side and ``pool_norm`` of an official stage-2 / retrieval file (a retrieval file has no MLM head:
        fresh), or this head of a module checkpoint, or its one video-text head of another name (a stage-2
        ``video_text`` head into ``multiple_choice``); other files leave them as built (``bert`` loads BERT)."""
        module = load_module_part(self, parts, self.name)
        if module is not None:
            sources = video_text_heads(parts.rest)
            if not module[0] and len(sources) == 1:
                return load_module_part(self, parts, sources.pop()) or module
            return module
        if parts.family not in ("mm_model", "mm_retrieval"):
            return set(), []
        state = {k: v for k, v in parts.rest.items() if k.startswith("pool_norm.")}
        state |= {"tower." + k: v for k, v in parts.rest.items() if not k.startswith("pool_norm.")}
        target = {k: v for k, v in self.state_dict().items() if k.removeprefix("tower.") not in TIED_KEYS}
        fresh_allowed = {k for k in target if k.startswith("tower.text_encoder.cls.")}
        if parts.family == "mm_model":
            fresh_allowed = set()
        check_fit(state, target, f"the {self.name} head", parts.family, fresh_allowed, f"heads.{self.name}.")
        self.load_state_dict({**self.state_dict(), **state}, strict=True)
        return set(parts.rest), sorted(set(target) - set(state))
