"""The AVA detector: online position table, box policies, training forward and loss, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import umt
from conftest import REPO, TINY, write_official_classifier
from umt.checkpoints import CheckpointError
from umt.detection import (
    ActionDetector,
    create_detector,
    detection_loss,
    detection_scores,
    detector_config,
    extend_boxes,
    jitter_boxes,
    read_detector_checkpoint,
    sample_boxes,
)
from umt.models.pos_embed import sinusoid_table
from umt.models.vit import VideoViT

TASK_KEYS = REPO.parent / "shared" / "reference" / "official_task_keys.json"
SMALL = {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_classes": 5}


def _boxes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    boxes = torch.tensor([[10.0, 20.0, 60.0, 50.0], [0.0, 0.0, 95.0, 63.0], [30.0, 5.0, 40.0, 30.0]])
    return boxes, torch.tensor([0, 0, 1]), torch.tensor([[96, 64]] * 3)


def test_online_table_follows_the_input_grid() -> None:
    encoder = VideoViT(detector_config(**SMALL, num_frames=2, img_size=64))
    video = torch.randn(1, 3, 2, 48, 80)
    out = encoder(video)
    assert out.grid == (2, 3, 5) and out.tokens.shape == (1, 2 * 3 * 5, 32)
    base = sinusoid_table(8 * 14 * 14, 32)  # frames 2 and 64 px: the table of this config is its own 2 x 4 x 4
    assert encoder.pos_embed.shape == (1, 2 * 4 * 4, 32) and not torch.equal(encoder.pos_embed[0], base[:32])
    per_frame = encoder.pos_embed[0].reshape(2, 4, 4, 32).permute(0, 3, 1, 2)
    expected = F.interpolate(per_frame, size=(3, 5), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    patches = encoder.patch_embed(video)
    torch.testing.assert_close(patches + expected.reshape(1, -1, 32), patches + encoder.position_table((2, 3, 5)))
    with pytest.raises(ValueError, match="multiples of 16"):
        encoder(torch.randn(1, 3, 2, 50, 80))


def test_extend_boxes_grow_and_clip() -> None:
    boxes, _, sizes = _boxes()
    grown = extend_boxes(boxes, sizes)
    width, height = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    torch.testing.assert_close(grown[0], boxes[0] + torch.stack([-width[0], -height[0], width[0], height[0]]) *
                               torch.tensor([0.05, 0.025, 0.05, 0.025]))
    assert grown[1].tolist() == [0.0, 0.0, 95.0, 63.0]  # clipped to [0, W-1] x [0, H-1]


def test_jitter_stays_in_bounds_and_moves_boxes() -> None:
    boxes, _, sizes = _boxes()
    many = boxes.repeat(200, 1)
    jittered = jitter_boxes(many, sizes.repeat(200, 1), generator=torch.Generator().manual_seed(0))
    assert (jittered[:, 0] >= 0).all() and (jittered[:, 2] <= 95).all() and (jittered[:, 3] <= 63).all()
    assert (jittered[:, 2] - jittered[:, 0] >= 1).all() and (jittered[:, 3] - jittered[:, 1] >= 1).all()
    width = many[:, 2] - many[:, 0] + 1
    shift = (jittered[:, 0] - many[:, 0]) / width
    inside = many[:, 0] > 0.2 * width  # left side not clamped at 0
    assert shift[inside].min() >= -0.2 - 1e-6 and shift[inside].max() <= 0.1 + 1e-6
    assert shift[inside].std() > 0.05


def test_sample_boxes_caps_each_clip() -> None:
    batch_index = torch.cat([torch.zeros(150, dtype=torch.long), torch.ones(7, dtype=torch.long)])
    keep = sample_boxes(batch_index, 100, torch.Generator().manual_seed(0))
    assert (batch_index[keep] == 0).sum() == 100 and (batch_index[keep] == 1).sum() == 7
    assert len(set(keep.tolist())) == len(keep)


def test_training_forward_loss_and_scores() -> None:
    torch.manual_seed(0)
    model = ActionDetector(detector_config(**SMALL, num_frames=2, img_size=64), max_boxes=1)
    boxes, batch_index, sizes = _boxes()
    video = torch.randn(2, 3, 2, 64, 96)
    labels = torch.tensor([[1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]])
    logits, proposals = model.train()(video, boxes, batch_index, sizes, generator=torch.Generator().manual_seed(1))
    assert logits.shape == (2, 5) and proposals.batch_index.tolist() == [0, 1]
    target = labels[proposals.keep]
    loss = detection_loss(logits, target)
    torch.testing.assert_close(loss, F.binary_cross_entropy(torch.sigmoid(logits), target.float(), reduction="sum")
                               / 5)
    loss.backward()
    assert model.head.fc.weight.grad is not None and model.encoder.norm.weight.grad is not None
    model.eval()
    logits, proposals = model(video, boxes, batch_index, sizes)
    assert proposals.keep.tolist() == [0, 1, 2]
    scores = detection_scores(logits, torch.tensor([0.9, 0.5, 1.0]))
    torch.testing.assert_close(scores[1], torch.sigmoid(logits[1]) * 0.5)


def _manifest_state(name: str) -> dict[str, torch.Tensor]:
    shapes = json.loads(TASK_KEYS.read_text())[name]
    generator = torch.Generator().manual_seed(0)
    return {key: torch.rand(shape, generator=generator) for key, shape in shapes.items()}


@pytest.mark.parametrize("wrapper", ["model", "module", "bare"])
@pytest.mark.parametrize("manifest", ["ava_b16_f8_224", "ava_l16_f8_224"])
def test_official_ava_manifest_loads_strictly(manifest: str, wrapper: str) -> None:
    state = _manifest_state(manifest)
    source = state if wrapper == "bare" else {wrapper: state}
    model = create_detector("umt_l16" if "_l16_" in manifest else "umt_b16", source, device="meta")
    assert not any(t.is_meta for t in model.state_dict().values() if t is not model.encoder.pos_embed)
    assert model.config.num_classes == 80
    assert model.head.fc.weight is not None and torch.equal(model.head.fc.weight, state["head.weight"])
    assert torch.equal(model.encoder.norm.weight, state["norm.weight"])
    assert sum(t.numel() for k, t in model.state_dict().items() if k != "encoder.pos_embed") == sum(
        t.numel() for t in state.values())


def test_classifier_initialises_the_detector(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_official_classifier(tmp_path / "k710.pth", num_classes=7)
    classifier = torch.load(path, weights_only=True)["model"]
    checkpoint = read_detector_checkpoint(path)
    assert checkpoint.family == "finetune"
    assert sorted(checkpoint.dropped) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    with caplog.at_level("INFO", logger="umt"):
        model = create_detector("umt_b16", checkpoint, **{**TINY, "num_classes": 80})
    assert "encoder.norm.*" in caplog.text and "head.fc.*" in caplog.text and "fc_norm" in caplog.text
    assert torch.equal(model.encoder.blocks[0].attn.qkv.weight, classifier["blocks.0.attn.qkv.weight"])
    assert torch.equal(model.encoder.norm.weight, torch.ones(TINY["embed_dim"]))


def test_wrong_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="video-QA model"):
        read_detector_checkpoint({"vision_encoder.encoder.patch_embed.proj.weight": torch.zeros(1),
                                  "text_decoder.bert.embeddings.word_embeddings.weight": torch.zeros(1)})
    state = _manifest_state("ava_b16_f8_224")
    with pytest.raises(CheckpointError, match=r"umt\.detection\.create_detector"):
        umt.read_checkpoint(state)
    with pytest.raises(CheckpointError, match="embed_dim 1024"):
        create_detector("umt_l16", state, device="meta")


def test_ava_class_names_are_shipped() -> None:
    from umt.detection import ava_action_names

    names = ava_action_names()
    assert len(names) == 80 and names[0] == "bend/bow (at the waist)" and names[79] == "watch (a person)"
    assert names[11] == "stand" and names[61] == "work on a computer"  # ids 12 and 62 of the AVA action list
    assert len(set(names)) == 80
