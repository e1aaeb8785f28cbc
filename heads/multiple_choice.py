"""Multiple-choice head (MSR-VTT MC): the video-text head trained as retrieval, evaluated by option accuracy."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from umt.heads.base import Batch, EncoderStep, EvalContext, HeadContext
from umt.heads.video_text import LossWeights, VideoTextHead
from umt.losses import video_text_similarity
from umt.models.multiple_choice import ITM_WEIGHT, MultipleChoiceScores, fuse_choices
from umt.qa_eval import ExactMatchAccuracy


class MultipleChoiceHead(VideoTextHead):
    """``VideoTextHead`` (same tower, checkpoints and VTC / VTM training, MLM off by default) whose evaluation
    picks one of each video's candidate captions (SPEC.md §3.9): ITC probability = softmax over the options of the
    per-frame similarity / temp, ITM probability = softmax(ITM logits)[match], score = ``itm_weight`` ITM +
    (1 - ``itm_weight``) ITC; logged: ``accuracy``.

    Evaluation batches: ``{"video": [B, ...], "captions": B*O str (video-major), "answer": [B]}``.

    Args:
        context: what the module knows.
        weights: the training losses (official MC fine-tuning: VTC + VTM, as retrieval).
        itm_weight: weight of the matching probability in the score (official 0.7).
        **options: the other ``VideoTextHead`` options.
    """

    def __init__(self, context: HeadContext, weights: LossWeights = LossWeights(mlm=0.0),
                 itm_weight: float = ITM_WEIGHT, **options: Any) -> None:
        super().__init__(context, weights=weights, **options)
        self.itm_weight = itm_weight
        self.accuracy = ExactMatchAccuracy()

    @torch.no_grad()
    def choose(self, step: EncoderStep, captions: list[str]) -> MultipleChoiceScores:
        """Scores of each video's options (``captions``: B*O strings, video-major)."""
        ids, mask = self.tokenize(captions, step.tokens.device)
        return self.score_options(step, ids, mask)

    @torch.no_grad()
    def score_options(self, step: EncoderStep, option_ids: Tensor, option_mask: Tensor) -> MultipleChoiceScores:
        """Scores of each video's options: ``option_ids`` / ``option_mask`` ``[B * O, L]``, video-major.

        Raises:
            ValueError: the option rows are not a multiple of the videos.
        """
        tokens, video_emb = self.media_features(step.output)
        videos = tokens.shape[0]
        if option_ids.shape[0] % videos:
            raise ValueError(f"{option_ids.shape[0]} options for {videos} videos; expected videos x options")
        options = option_ids.shape[0] // videos
        states = self.tower.encode_text(option_ids, option_mask)
        own = torch.arange(videos, device=tokens.device)
        similarity = video_text_similarity(video_emb, self.tower.text_embedding(states), self.tower.temp)
        similarity = similarity.view(videos, videos, options)[own, own]
        itm = self.tower.itm_logits(tokens.repeat_interleave(options, 0), states, option_mask).softmax(-1)[:, 1]
        return fuse_choices(similarity, itm.view(videos, options), self.itm_weight)

    def eval_epoch_start(self, stage: str) -> None:
        self.accuracy.reset()

    def eval_step(self, step: EncoderStep, batch: Batch, stage: str) -> dict[str, Tensor]:
        """Score this batch's options and update the accuracy."""
        prediction = self.choose(step, list(batch["captions"])).prediction
        self.accuracy.update(prediction, batch["answer"].to(prediction.device))
        return {}

    def eval_epoch_end(self, context: EvalContext) -> dict[str, Tensor | float]:
        """``accuracy`` over every process."""
        if self.accuracy.update_count == 0:
            return {}
        accuracy = self.accuracy.compute()
        self.accuracy.reset()
        return {"accuracy": accuracy}

    def predict(self, step: EncoderStep, batch: Batch) -> Tensor:
        """Option scores ``[B, O]``."""
        return self.choose(step, list(batch["captions"])).scores
