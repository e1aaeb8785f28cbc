"""Training losses of UMT: unmasked-token alignment (UTA), video-text contrastive (VTC) and matching (VTM), MLM."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from umt.distributed import all_gather_local_grad


def uta_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Unmasked-token alignment loss (SPEC.md §1.7, §3.5 step 5): mean over (K, B, N) of ``2 - 2*cos``.

    Both inputs are L2-normalised over D here (a no-op for already normalised ones) and the loss is
    computed in float32.

    Args:
        student: aligned student tokens ``[K, B, N, D]``.
        teacher: teacher features at the same visible positions ``[K, B, N, D]``.

    Returns:
        scalar float32 tensor in [0, 4].
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student {list(student.shape)} and teacher {list(teacher.shape)} shapes differ")
    cosine = (F.normalize(student.float(), dim=-1) * F.normalize(teacher.float(), dim=-1)).sum(-1)
    return (2 - 2 * cosine).mean()


def video_text_similarity(video: Tensor, text: Tensor, temp: Tensor | float = 1.0) -> Tensor:
    """Video-text similarity of UMT (SPEC.md §3.5 step 6, §3.8): mean over frames of cosine, divided by ``temp``.

    Computed in float32.

    Args:
        video: video embeddings ``[V, E]`` or per-frame ``[V, T, E]``.
        text: text embeddings ``[N, E]``.
        temp: temperature (scalar), used as a divisor.

    Returns:
        ``[V, N]`` similarities.
    """
    if video.ndim == 2:
        video = video.unsqueeze(1)
    video = F.normalize(video.float(), dim=-1)
    text = F.normalize(text.float(), dim=-1)
    return torch.einsum("vte,ne->vtn", video, text).mean(1) / temp


def same_id(ids: Tensor) -> Tensor:
    """Positive pairs: bool ``[B, B]``, True where ``ids[i] == ids[j]`` (clips of one video / caption)."""
    return ids.view(-1, 1) == ids.view(1, -1)


def vtc_loss(video: Tensor, text: Tensor, ids: Tensor, temp: Tensor | float, gather: bool = True) -> Tensor:
    """Video-text contrastive loss with soft targets (SPEC.md §3.5 step 6).

    With ``gather`` the embeddings and ids of all processes are concatenated first (gradient to the local rows
    only, see ``umt.distributed.all_gather_local_grad``), so every process computes the same loss on the global
    batch. Targets: every pair with equal ids is a positive, each row normalised to sum 1 (the matrix is
    symmetric, so the same targets serve both directions). Loss: ``(CE(v->t) + CE(t->v)) / 2``, each the mean
    over rows of ``-sum(targets * log_softmax(sim))``.

    Args:
        video: projected video embeddings ``[B, E]`` or ``[B, T, E]`` (per frame).
        text: projected text embeddings ``[B, E]``.
        ids: sample identities ``[B]`` (integers).
        temp: temperature (already clamped by the model).
        gather: gather across processes (a no-op without a process group).

    Returns:
        scalar float32 loss.
    """
    if not video.shape[0] == text.shape[0] == ids.shape[0]:
        raise ValueError(f"batch sizes differ: video {video.shape[0]}, text {text.shape[0]}, ids {ids.shape[0]}")
    if gather:
        video, text, ids = all_gather_local_grad(video), all_gather_local_grad(text), all_gather_local_grad(ids)
    sim = video_text_similarity(video, text, temp)
    targets = same_id(ids).float()
    targets = targets / targets.sum(1, keepdim=True)
    v2t = -(F.log_softmax(sim, dim=1) * targets).sum(1).mean()
    t2v = -(F.log_softmax(sim.t(), dim=1) * targets).sum(1).mean()
    return (v2t + t2v) / 2


class VTMNegatives(NamedTuple):
    """One negative per sample: ``video[i]`` is the negative video of text i, ``text[i]`` that of video i (``[B]``)."""

    video: Tensor
    text: Tensor


class VTMPairs(NamedTuple):
    """The 3B matching pairs ``(video[n], text[n])`` with ``labels[n]`` (1 = match), each ``[3B]`` long."""

    video: Tensor
    text: Tensor
    labels: Tensor


MatchLogits = Callable[[Tensor, Tensor], Tensor]
"""``(video_index [n], text_index [n]) -> ITM logits [n, 2]`` (index 1 = match) for pairs of the local batch."""


def vtm_negatives(sim: Tensor, ids: Tensor, hard: bool = True,
                  generator: torch.Generator | None = None) -> VTMNegatives:
    """Draw one negative video per text and one negative text per video (SPEC.md §3.5 step 7).

    Hard negatives follow the official recipe: weights = ``softmax(sim + 1e-4)`` per row (the shift is kept from
    the official code; softmax ignores it), pairs with equal ids set to 0, NaN/inf set to 0.01, then one
    multinomial draw per row (text rows of ``sim.T`` for the videos, video rows of ``sim`` for the texts).
    With ``hard=False`` the negative is uniform over the pairs with different ids.

    Args:
        sim: video-text similarities of the local batch ``[B, B]`` (``video_text_similarity(v, t, temp)``);
            used without gradient.
        ids: sample identities ``[B]``.
        hard: sample by similarity (True) or uniformly (False).
        generator: random source on ``sim``'s device (None: the global one).

    Returns:
        ``VTMNegatives`` of ``[B]`` long indices into the batch.
    """
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or sim.shape[0] != ids.shape[0]:
        raise ValueError(f"sim must be [B, B] with B = len(ids) = {ids.shape[0]}, got {list(sim.shape)}")
    positive = same_id(ids)
    if positive.all(1).any():
        raise ValueError("a sample shares its id with the whole batch: VTM has no negative to draw for it")
    with torch.no_grad():
        sim = sim.detach().float()
        if hard:
            weights_v2t = F.softmax(sim + 1e-4, dim=1).masked_fill(positive, 0)
            weights_t2v = F.softmax(sim.t() + 1e-4, dim=1).masked_fill(positive, 0)
            weights_v2t = torch.nan_to_num(weights_v2t, nan=1e-2, posinf=1e-2, neginf=1e-2)
            weights_t2v = torch.nan_to_num(weights_t2v, nan=1e-2, posinf=1e-2, neginf=1e-2)
        else:
            weights_v2t = weights_t2v = (~positive).float()
        video = torch.multinomial(weights_t2v, 1, generator=generator).squeeze(1)
        text = torch.multinomial(weights_v2t, 1, generator=generator).squeeze(1)
    return VTMNegatives(video=video, text=text)


def vtm_pairs(negatives: VTMNegatives) -> VTMPairs:
    """The official pair order: B positives ``(i, i)``, B ``(video neg of text i, i)``, B ``(i, text neg of video i)``.

    Returns:
        ``VTMPairs`` of ``[3B]`` long tensors; labels 1 for the first B, 0 for the rest.
    """
    own = torch.arange(negatives.video.shape[0], device=negatives.video.device)
    video = torch.cat([own, negatives.video, own])
    text = torch.cat([own, own, negatives.text])
    labels = torch.zeros_like(video)
    labels[: own.shape[0]] = 1
    return VTMPairs(video=video, text=text, labels=labels)


def vtm_loss(match_logits: MatchLogits, sim: Tensor, ids: Tensor, hard: bool = True,
             generator: torch.Generator | None = None) -> Tensor:
    """Video-text matching loss (SPEC.md §3.5 step 7): cross-entropy of the ITM logits over the 3B pairs.

    Args:
        match_logits: the model's matching head over pairs of the local batch, see ``MatchLogits``.
        sim: local video-text similarities ``[B, B]`` for the negative sampling (no gradient).
        ids: sample identities ``[B]``.
        hard: hard negatives (True) or uniform ones.
        generator: random source on ``sim``'s device (None: the global one).

    Returns:
        scalar loss, the mean over the 3B pairs.
    """
    pairs = vtm_pairs(vtm_negatives(sim, ids, hard=hard, generator=generator))
    logits = match_logits(pairs.video, pairs.text)
    if logits.shape != (pairs.labels.shape[0], 2):
        raise ValueError(f"match_logits must return [{pairs.labels.shape[0]}, 2], got {list(logits.shape)}")
    return F.cross_entropy(logits.float(), pairs.labels)


def mlm_mask(input_ids: Tensor, vocab_size: int, mask_token_id: int, pad_token_id: int, cls_token_id: int,
             probability: float = 0.5, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Corrupt text tokens for masked language modelling (SPEC.md §3.5 step 8, the official scheme).

    Each token is chosen with ``probability``, except [PAD] and [CLS] ([SEP] may be chosen, as official). Of
    the chosen, 80 % become [MASK], half of the others (10 %) a uniformly random id in ``[0, vocab_size)``,
    the rest stay unchanged.

    Args:
        input_ids: token ids ``[B, L]`` (long).
        generator: random source on ``input_ids``' device (None: the global one).

    Returns:
        the corrupted ids ``[B, L]`` (a new tensor) and the labels ``[B, L]``: the original id where chosen,
        -100 elsewhere.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be within [0, 1], got {probability}")

    def draw(p: float) -> Tensor:
        return torch.rand(input_ids.shape, generator=generator, device=input_ids.device) < p

    chosen = draw(probability) & (input_ids != pad_token_id) & (input_ids != cls_token_id)
    labels = input_ids.masked_fill(~chosen, -100)
    to_mask = draw(0.8) & chosen
    to_random = draw(0.5) & chosen & ~to_mask
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=input_ids.device)
    corrupted = input_ids.masked_fill(to_mask, mask_token_id)
    corrupted = torch.where(to_random, random_ids.to(input_ids.dtype), corrupted)
    return corrupted, labels


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Masked-language-modelling loss: cross-entropy averaged over the tokens whose label is not -100.

    Args:
        logits: vocabulary logits ``[B, L, vocab]``.
        labels: ``[B, L]`` from ``mlm_mask``.

    Returns:
        scalar float32 loss; 0 when no token is labelled (where the mean of plain cross-entropy is NaN).
    """
    total = F.cross_entropy(logits.float().flatten(0, -2), labels.flatten(), ignore_index=-100, reduction="sum")
    return total / (labels != -100).sum().clamp(min=1)
