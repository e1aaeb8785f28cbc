"""The ``detection`` head on ``UMTModule``: same outputs as ``ActionDetector``, official files, training, mAP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import REPO, write_official_classifier
from umt.checkpoints import read_parts
from umt.detection import ActionDetector, detection_loss, detection_scores, detector_config, official_box_coordinates
from umt.heads.base import EvalContext
from umt.heads.detection import DetectionHead
from umt.module import UMTModule
from umt.options import EncoderConfig

TASK_KEYS = REPO.parent / "shared" / "reference" / "official_task_keys.json"
SMALL = {"embed_dim": 32, "depth": 1, "num_heads": 2}


def _module(checkpoint: str | None = None, **encoder: object) -> UMTModule:
    options = {"size": "umt_b16", "pos_embed": "online", "num_frames": 2, "img_size": 64, "drop_path_rate": 0.0,
               **SMALL, **encoder}
    return UMTModule(heads=[DetectionHead], encoder=EncoderConfig(**options), checkpoint=checkpoint)


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.zeros(3, 80, dtype=torch.uint8)
    labels[0, [0, 5]] = labels[1, 2] = labels[2, 7] = 1
    return {"video": torch.randn(2, 3, 2, 64, 96, generator=generator),
            "boxes": torch.tensor([[10.0, 20.0, 60.0, 50.0], [0.0, 0.0, 95.0, 63.0], [30.0, 5.0, 40.0, 30.0]]),
            "batch_index": torch.tensor([0, 0, 1]), "size": torch.tensor([[96, 64], [96, 64], [80, 64]]),
            "labels": labels, "box_scores": torch.tensor([0.9, 0.85, 1.0]),
            "video_size": torch.tensor([[192, 128]] * 3), "index": torch.tensor([0, 0, 1])}


def _detector_from(module: UMTModule) -> ActionDetector:
    """An ``ActionDetector`` with the module's weights (the head's norm is the detector's final encoder norm)."""
    detector = ActionDetector(detector_config(**SMALL, num_frames=2, img_size=64))
    head = module.heads["detection"]
    state = {f"encoder.{k}": v for k, v in module.encoder.state_dict().items()}
    state |= {f"encoder.norm.{k}": v for k, v in head.norm.state_dict().items()}
    state |= {f"head.{k}": v for k, v in head.head.state_dict().items()}
    detector.load_state_dict(state, strict=True)
    return detector


def test_head_equals_the_detector_at_test_and_in_training() -> None:
    torch.manual_seed(0)
    module = _module()
    torch.nn.init.normal_(module.heads["detection"].head.fc.weight)
    detector = _detector_from(module)
    batch = _batch()
    module.eval(), detector.eval()
    with torch.no_grad():
        got, chosen = module.heads["detection"](module(batch["video"]), batch)
        want, expected = detector(batch["video"], batch["boxes"], batch["batch_index"], batch["size"])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(chosen.boxes, expected.boxes)
    assert not torch.equal(chosen.boxes, batch["boxes"])  # extended
    module.train()
    logits, chosen = module.heads["detection"](module.encode(batch["video"], train=True), batch)
    loss = module.heads["detection"].losses(module.encode(batch["video"], train=True), batch)["loss"]  # same draws
    torch.testing.assert_close(loss, detection_loss(logits, batch["labels"][chosen.keep]))
    assert not torch.equal(chosen.boxes, batch["boxes"][chosen.keep])  # jittered
    loss.backward()
    assert module.heads["detection"].norm.weight.grad is not None and module.encoder.blocks[0].attn.qkv.weight.grad \
        is not None


def test_wrong_patch_size_fails_clearly() -> None:
    module = _module()
    module.heads["detection"].patch_size = 8
    with pytest.raises(ValueError, match="patch_size"):
        module.heads["detection"](module(_batch()["video"]), _batch())


@pytest.mark.parametrize("wrapper", ["model", "module", "bare"])
@pytest.mark.parametrize("manifest", ["ava_b16_f8_224", "ava_l16_f8_224"])
def test_official_ava_files_load_strictly_into_the_module(manifest: str, wrapper: str) -> None:
    shapes = json.loads(TASK_KEYS.read_text())[manifest]
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.rand(shape, generator=generator) for key, shape in shapes.items()}
    with torch.device("meta"):
        encoder = EncoderConfig(size="umt_l16" if "_l16_" in manifest else "umt_b16", pos_embed="online")
        module = UMTModule(heads=[DetectionHead], encoder=encoder)
    module.to_empty(device="cpu")
    module._load(read_parts(state if wrapper == "bare" else {wrapper: state}))
    head = module.heads["detection"]
    assert torch.equal(head.head.fc.weight, state["head.weight"]) and torch.equal(head.norm.bias, state["norm.bias"])
    assert torch.equal(module.encoder.blocks[-1].mlp.fc2.weight, state[f"blocks.{len(module.encoder.blocks) - 1}"
                                                                           ".mlp.fc2.weight"])
    loaded = sum(t.numel() for k, t in module.state_dict().items() if k != "encoder.pos_embed")
    assert loaded == sum(t.numel() for t in state.values())


def test_classifier_initialises_the_module_officially(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_official_classifier(tmp_path / "k710.pth", num_classes=7, depth=1, num_frames=2)
    official = torch.load(path, weights_only=True)["model"]
    with caplog.at_level("INFO", logger="umt"):
        module = _module(str(path))
    head = module.heads["detection"]
    assert torch.equal(module.encoder.blocks[0].attn.qkv.weight, official["blocks.0.attn.qkv.weight"])
    assert torch.equal(head.norm.weight, torch.ones(32)) and head.head.fc.weight.shape == (80, 32)
    assert "not used by these heads [head.fc.*, head.fc_norm.*]; heads initialised fresh [heads.*]" in caplog.text


def test_eval_epoch_gives_the_frame_map(tmp_path: Path) -> None:
    """Detections of two batches through ``eval_step`` / ``eval_epoch_end`` equal the metric fed by hand."""
    batch = _batch()
    truth = official_box_coordinates(batch["boxes"], batch["size"], batch["video_size"]).tolist()
    rows = [("0902", truth[0], 1), ("0902", truth[0], 6), ("0902", truth[1], 3), ("0903", truth[2], 8),
            ("0903", [0.6, 0.6, 0.9, 0.9], 1)]  # a person no box finds
    (tmp_path / "gt.csv").write_text("".join(f"v,{t},{','.join(f'{v:.3f}' for v in box)},{a},0\n"
                                             for t, box, a in rows))
    (tmp_path / "map.pbtxt").write_text("".join(f'item {{\n  name: "a{i}"\n  id: {i}\n}}\n' for i in (1, 3, 6, 8)))
    (tmp_path / "excluded.csv").write_text("")
    datamodule = type("AVA", (), {"groundtruth_csv": tmp_path / "gt.csv", "labelmap": tmp_path / "map.pbtxt",
                                  "val_exclusions": tmp_path / "excluded.csv",
                                  "val_set": type("Set", (), {"keys": ["v,0902", "v,0903"]})()})()
    torch.manual_seed(0)
    module = _module().eval()
    head = module.heads["detection"]
    torch.nn.init.normal_(head.head.fc.weight)
    head.eval_epoch_start("val")
    with torch.no_grad():
        step = module(batch["video"])
        head.eval_step(step, batch, "val")
        logits, _ = head(step, batch)
    context = EvalContext("val", 0, 1, gather=lambda t: t[None], reduce=lambda t, op: t, datamodule=datamodule,
                          device=torch.device("cpu"))
    result = head.eval_epoch_end(context)
    expected = head.frame_map(datamodule)

    expected.update(batch["index"], official_box_coordinates(batch["boxes"], batch["size"], batch["video_size"]),
                    detection_scores(logits, batch["box_scores"]))
    assert set(result) == {"mAP", "AP/1 a1", "AP/3 a3", "AP/6 a6", "AP/8 a8"}
    assert {k: float(v) for k, v in result.items()} == pytest.approx(
        {k: float(v) for k, v in expected.compute().items()}, nan_ok=True)
    assert 0 < float(result["mAP"]) <= 1 and head.collected == []
    with pytest.raises(ValueError, match="AVA data module"):
        head.eval_epoch_end(EvalContext("val", 0, 1, lambda t: t, lambda t, op: t, None, torch.device("cpu")))
