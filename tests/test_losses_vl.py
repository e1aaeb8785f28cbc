"""Video-language losses: VTC (also under a 2-process gloo run), VTM negatives and pairs, MLM masking."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn

from umt.distributed import all_gather_local_grad
from umt.losses import mlm_loss, mlm_mask, same_id, video_text_similarity, vtc_loss, vtm_loss, vtm_negatives, vtm_pairs

IDS = torch.tensor([0, 1, 2, 0, 3, 4, 2, 5])
SPLIT = (3, 5)  # uneven per-process batches; ids 0 and 2 have a clip on each process


class Projections(nn.Module):
    """Two small linear layers standing in for ``vision_proj`` / ``text_proj``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.video = nn.Linear(6, 5)
        self.text = nn.Linear(6, 5)

    def forward(self, video: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        return self.video(video), self.text(text)


def _inputs() -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 2, 6, generator=generator), torch.randn(8, 6, generator=generator)


def _single_process() -> dict[str, Tensor]:
    video, text = (x.requires_grad_() for x in _inputs())
    model = Projections()
    loss = vtc_loss(*model(video, text), IDS, temp=0.1)
    loss.backward()
    return {"loss": loss.detach(), "video": video.grad, "text": text.grad,
            **{name: p.grad for name, p in model.named_parameters()}}


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        rows = slice(sum(SPLIT[:rank]), sum(SPLIT[: rank + 1]))
        video, text = (x[rows].clone().requires_grad_() for x in _inputs())
        model = nn.parallel.DistributedDataParallel(Projections())
        loss = vtc_loss(*model(video, text), IDS[rows], temp=0.1)
        loss.backward()
        result = {"loss": loss.detach(), "video": video.grad, "text": text.grad,
                  **{name.removeprefix("module."): p.grad for name, p in model.named_parameters()}}
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_vtc_two_processes_match_one(tmp_path: Path) -> None:
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="spawn")
    reference = _single_process()
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    for rank, result in enumerate(results):
        rows = slice(sum(SPLIT[:rank]), sum(SPLIT[: rank + 1]))
        torch.testing.assert_close(result["loss"], reference["loss"])
        torch.testing.assert_close(result["video"], reference["video"][rows])
        torch.testing.assert_close(result["text"], reference["text"][rows])
        for name in ("video.weight", "video.bias", "text.weight", "text.bias"):
            # DDP averages the per-process gradients; each holds the gradient of its own rows only
            torch.testing.assert_close(result[name] * 2, reference[name])


def test_gather_is_identity_without_process_group() -> None:
    x = torch.randn(3, 2)
    assert all_gather_local_grad(x) is x


def test_vtc_matches_hand_written_soft_targets() -> None:
    video, text = torch.randn(4, 3, 8), torch.randn(4, 8)
    ids = torch.tensor([7, 7, 7, 1])
    sim = torch.stack([torch.stack([F.cosine_similarity(video[i], text[j].expand(3, 8)).mean() / 0.05
                                    for j in range(4)]) for i in range(4)])
    targets = torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 1]])
    expected = -((sim.log_softmax(1) * targets).sum(1).mean() + (sim.t().log_softmax(1) * targets).sum(1).mean()) / 2
    torch.testing.assert_close(video_text_similarity(video, text, 0.05), sim)
    torch.testing.assert_close(vtc_loss(video, text, ids, temp=0.05), expected)
    # with distinct ids the loss is plain symmetric InfoNCE, which differs here
    infonce = (F.cross_entropy(sim, torch.arange(4)) + F.cross_entropy(sim.t(), torch.arange(4))) / 2
    torch.testing.assert_close(vtc_loss(video, text, torch.arange(4), temp=0.05), infonce)
    assert not torch.isclose(expected, infonce)


def test_vtm_negatives_never_share_the_id() -> None:
    generator = torch.Generator().manual_seed(0)
    ids = torch.tensor([0, 0, 1, 1, 1, 2, 3, 0, 4, 4, 5, 1])
    for hard in (True, False):
        for _ in range(50):
            # large similarities on the diagonal and within ids: hard sampling would like the positives most
            sim = torch.randn(12, 12) + same_id(ids) * 10
            negatives = vtm_negatives(sim, ids, hard=hard, generator=generator)
            assert not same_id(ids)[torch.arange(12), negatives.text].any()
            assert not same_id(ids)[negatives.video, torch.arange(12)].any()


def test_vtm_hard_negatives_follow_the_similarity() -> None:
    block = torch.tensor([[0.0, 2.0, 1.0, 0.0],
                          [0.0, 0.0, 0.0, 0.0],
                          [3.0, 0.0, 0.0, 0.0],
                          [0.0, 0.0, 0.0, 0.0]])
    draws = 600
    # many independent copies of the 4-sample batch in one call: pairs across copies have similarity -inf
    sim = torch.full((4 * draws, 4 * draws), -math.inf)
    for copy in range(draws):
        sim[4 * copy : 4 * copy + 4, 4 * copy : 4 * copy + 4] = block
    negatives = vtm_negatives(sim, torch.arange(4 * draws), generator=torch.Generator().manual_seed(0))
    first = torch.arange(0, 4 * draws, 4)
    texts, videos = negatives.text[first] - first, negatives.video[first] - first
    # video 0 draws its negative text from softmax([-, 2, 1, 0]) (its own text excluded)
    expected_text = torch.tensor([0.0, math.e**2, math.e, 1.0]) / (math.e**2 + math.e + 1)
    observed_text = torch.bincount(texts, minlength=4) / draws
    # text 0 draws its negative video from column 0: softmax([-, 0, 3, 0])
    expected_video = torch.tensor([0.0, 1.0, math.e**3, 1.0]) / (math.e**3 + 2)
    observed_video = torch.bincount(videos, minlength=4) / draws
    assert observed_text.shape == observed_video.shape == (4,)  # never outside the copy
    tolerance = 4 * math.sqrt(0.25 / draws)  # four standard deviations of a frequency at worst
    torch.testing.assert_close(observed_text, expected_text, atol=tolerance, rtol=0)
    torch.testing.assert_close(observed_video, expected_video, atol=tolerance, rtol=0)
    # uniform sampling would put 1/3 on each of the three other texts
    assert observed_text[1] > 1 / 3 + tolerance


def test_vtm_negatives_are_seedable_and_fail_without_negatives() -> None:
    sim, ids = torch.randn(5, 5), torch.tensor([0, 1, 1, 2, 3])
    first = vtm_negatives(sim, ids, generator=torch.Generator().manual_seed(3))
    second = vtm_negatives(sim, ids, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first.video, second.video) and torch.equal(first.text, second.text)
    with pytest.raises(ValueError, match="no negative"):
        vtm_negatives(torch.randn(3, 3), torch.tensor([4, 4, 4]))


def test_vtm_pairs_and_loss() -> None:
    ids = torch.arange(3)
    pairs = vtm_pairs(vtm_negatives(torch.randn(3, 3), ids, generator=torch.Generator().manual_seed(0)))
    assert pairs.labels.tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert pairs.video[:3].tolist() == [0, 1, 2] and pairs.text[:3].tolist() == [0, 1, 2]
    assert pairs.text[3:6].tolist() == [0, 1, 2] and pairs.video[6:].tolist() == [0, 1, 2]
    assert (pairs.video[3:6] != ids).all() and (pairs.text[6:] != ids).all()

    def oracle(video: Tensor, text: Tensor) -> Tensor:
        """Logits that are right with margin 10 for every pair."""
        match = (video == text).float() * 20 - 10
        return torch.stack([-match / 2, match / 2], dim=1)

    sim = torch.randn(3, 3)
    assert vtm_loss(oracle, sim, ids) < 1e-4
    assert vtm_loss(lambda v, t: -oracle(v, t), sim, ids) > 9
    torch.testing.assert_close(vtm_loss(lambda v, t: torch.zeros(v.shape[0], 2), sim, ids), torch.tensor(math.log(2)))


VOCAB, PAD, CLS, SEP, MASK = 1000, 0, 101, 30001, 30002
"""Random replacements fall in [0, VOCAB); words, [SEP] and [MASK] lie above it, so each outcome is visible."""


def _token_batch() -> Tensor:
    """``[400, 32]`` ids: [CLS], words in [1000, 30000), [SEP], then padding."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (400, 32), generator=generator)
    lengths = torch.randint(5, 31, (400,), generator=generator)
    ids[:, 0] = CLS
    ids[torch.arange(400), lengths] = SEP
    ids[torch.arange(32) > lengths[:, None]] = PAD
    return ids


def test_mlm_mask_rates_and_special_tokens() -> None:
    ids = _token_batch()
    corrupted, labels = mlm_mask(ids, VOCAB, MASK, PAD, CLS, generator=torch.Generator().manual_seed(1))
    chosen = labels != -100
    assert torch.equal(labels[chosen], ids[chosen])
    assert not chosen[(ids == PAD) | (ids == CLS)].any()
    assert torch.equal(corrupted[~chosen], ids[~chosen])
    eligible = (ids != PAD) & (ids != CLS)
    assert chosen[ids == SEP].any()  # [SEP] may be masked, as official
    rate = chosen.sum() / eligible.sum()
    n = int(chosen.sum())
    masked = (corrupted[chosen] == MASK).float().mean()
    random = (corrupted[chosen] < VOCAB).float().mean()
    kept = (corrupted[chosen] == ids[chosen]).float().mean()
    assert abs(rate - 0.5) < 4 * math.sqrt(0.25 / int(eligible.sum()))
    assert abs(masked - 0.8) < 4 * math.sqrt(0.16 / n)
    assert abs(random - 0.1) < 4 * math.sqrt(0.09 / n)
    assert abs(kept - 0.1) < 4 * math.sqrt(0.09 / n)


def test_mlm_mask_is_seedable() -> None:
    ids = _token_batch()
    first = mlm_mask(ids, VOCAB, MASK, PAD, CLS, generator=torch.Generator().manual_seed(5))
    second = mlm_mask(ids, VOCAB, MASK, PAD, CLS, generator=torch.Generator().manual_seed(5))
    third = mlm_mask(ids, VOCAB, MASK, PAD, CLS, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[1], third[1])


def test_mlm_loss_averages_labelled_tokens() -> None:
    logits = torch.randn(2, 3, 7, requires_grad=True)
    labels = torch.tensor([[-100, 4, -100], [2, -100, -100]])
    expected = (F.cross_entropy(logits[0, 1:2], labels[0, 1:2]) + F.cross_entropy(logits[1, 0:1], labels[1, 0:1])) / 2
    torch.testing.assert_close(mlm_loss(logits, labels), expected)
    empty = mlm_loss(logits, torch.full((2, 3), -100))
    assert empty.item() == 0 and empty.requires_grad
