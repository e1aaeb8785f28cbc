"""Multiple-choice video-text scoring (MSR-VTT MC): fuse contrastive and matching probabilities over the options."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from umt.models.video_text import VideoTextModel

ITM_WEIGHT = 0.7
"""Weight of the matching probability in the official score (the contrastive one gets ``1 - ITM_WEIGHT``)."""


@dataclass
class MultipleChoiceScores:
    """Per-option probabilities of a batch of videos.

    Attributes:
        itc_probs: ``[B, O]`` softmax over the options of the contrastive similarity / temp.
        itm_probs: ``[B, O]`` matching-head probability of "match".
        scores: ``[B, O]`` ``ITM_WEIGHT * itm_probs + (1 - ITM_WEIGHT) * itc_probs``.
        prediction: ``[B]`` index of the best option.
    """

    itc_probs: Tensor
    itm_probs: Tensor
    scores: Tensor
    prediction: Tensor


def multiple_choice_scores(model: VideoTextModel, video: Tensor, option_ids: Tensor, option_mask: Tensor,
                           itm_weight: float = ITM_WEIGHT) -> MultipleChoiceScores:
    """Score each video's candidate captions as the official ``retrieval_mc`` evaluation.

    Args:
        model: a stage-2 / retrieval fine-tuned model.
        video: ``[B, 3, T, H, W]``.
        option_ids: ``[B * O, L]`` the options, video-major (video i's options are rows ``O*i .. O*i + O-1``).
        option_mask: ``[B * O, L]``, 1 = token.
        itm_weight: weight of the matching probability in the score.

    Raises:
        ValueError: the option rows are not a multiple of the videos.
    """
    videos = video.shape[0]
    if option_ids.shape[0] % videos:
        raise ValueError(f"{option_ids.shape[0]} option rows for {videos} videos; expected videos x options rows")
    options = option_ids.shape[0] // videos
    tokens, pooled = model.encode_video(video, per_frame=True)
    text = model.encode_text(option_ids, option_mask)
    own = torch.arange(videos, device=video.device)
    similarity = model.similarity(pooled, text).view(videos, videos, options)[own, own]
    itm = model.itm_logits(tokens.repeat_interleave(options, 0), text, option_mask).softmax(-1)[:, 1]
    return fuse_choices(similarity, itm.view(videos, options), itm_weight)


def fuse_choices(similarity: Tensor, itm_probs: Tensor, itm_weight: float = ITM_WEIGHT) -> MultipleChoiceScores:
    """The official option scores from the contrastive similarities / temp ``[B, O]`` and the matching
    probabilities of "match" ``[B, O]``: ``itm_weight * itm + (1 - itm_weight) * softmax(similarity)``."""
    itc_probs = similarity.softmax(-1)
    scores = itm_weight * itm_probs + (1 - itm_weight) * itc_probs
    return MultipleChoiceScores(itc_probs, itm_probs, scores, scores.argmax(-1))
