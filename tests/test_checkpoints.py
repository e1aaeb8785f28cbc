"""Official checkpoint layouts load strictly through create_model; bad files fail with one clear error."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
import torch

import umt
from conftest import KEYS_MANIFEST, TINY, write_official_classifier
from umt.checkpoints import DROPPED_BY_FAMILY, CheckpointError, load_weights, read_checkpoint, save_native

MANIFESTS: dict[str, dict[str, list[int]]] = json.loads(KEYS_MANIFEST.read_text())


@functools.cache
def _manifest_state(manifest: str) -> dict[str, torch.Tensor]:
    return _random_state(MANIFESTS[manifest])


def _random_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {k: torch.randn(shape, generator=generator) if shape else torch.tensor(0.07) for k, shape in shapes.items()}


def _wrap(state: dict, wrapper: str) -> dict:
    return state if wrapper == "bare" else {wrapper: state, "epoch": torch.tensor(3)}


def _model_name(manifest: str) -> str:
    return "umt_l16" if "_l16_" in manifest else "umt_b16"


def _frames(manifest: str) -> int:
    return int(re.search(r"_f(\d+)_", manifest).group(1))


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
@pytest.mark.parametrize("wrapper", ["model", "module", "bare"])
def test_official_manifest_loads(manifest: str, wrapper: str) -> None:
    shapes = MANIFESTS[manifest]
    state = _manifest_state(manifest)
    checkpoint = read_checkpoint(_wrap(state, wrapper))
    model = umt.create_model(_model_name(manifest), checkpoint, num_frames=_frames(manifest), device="meta")
    loaded = {k for k, v in model.state_dict().items() if not v.is_meta}
    family = manifest.split("_b16")[0].split("_l16")[0]
    documented = DROPPED_BY_FAMILY.get({"mm_vision": "mm_vision", "pretrain": "pretrain"}.get(family, ""), ())
    dropped = {k for k in shapes if any(k.startswith(p) for p in documented)}
    # every checkpoint tensor either reached the model or is a documented drop
    assert len(loaded) + len(dropped) == len(shapes) - ("pos_embed" in shapes and "encoder.pos_embed" not in loaded)
    assert sum(t.numel() for k, t in model.state_dict().items() if not t.is_meta) == sum(
        state[k].numel() for k in shapes if k not in dropped)
    if family == "finetune":
        assert model.config.num_classes == shapes["head.weight"][0]
        torch.testing.assert_close(model.head.fc.weight, state["head.weight"])


def test_real_load_matches_tensors() -> None:
    shapes = MANIFESTS["finetune_b16_f8_224"]
    state = _random_state(shapes)
    model = umt.create_model("umt_b16", {"module": state})
    torch.testing.assert_close(model.encoder.blocks[3].attn.q_bias, state["blocks.3.attn.q_bias"])
    torch.testing.assert_close(model.head.fc_norm.weight, state["fc_norm.weight"])


def test_stage2_full_model_drops_text_and_teacher(caplog: pytest.LogCaptureFixture) -> None:
    vision = _random_state(MANIFESTS["mm_vision_b16_f4_224"])
    full = {"vision_encoder." + k: v for k, v in vision.items()}
    full |= {"clip_teacher.conv1.weight": torch.zeros(4, 3, 1, 16, 16),
             "text_encoder.bert.embeddings.x": torch.zeros(2), "vision_proj.weight": torch.zeros(2, 2),
             "itm_head.bias": torch.zeros(2), "temp": torch.tensor(0.07)}
    with caplog.at_level("INFO", logger="umt"):
        model = umt.create_model("umt_b16", {"model": full}, num_frames=4, device="meta")
    assert model.config.final_norm and model.config.pos_embed == "extend"
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded")]
    for group in ("clip_decoder.*", "clip_teacher.*", "text_encoder.bert.*", "vision_proj.*", "itm_head.*", "temp"):
        assert group in line


def test_stage1_student_reports_fresh_head() -> None:
    state = _random_state(MANIFESTS["pretrain_b16_f8_224"])
    checkpoint = read_checkpoint(state)
    model = umt.create_model("umt_b16", checkpoint, num_classes=400, device="meta")
    report = load_weights(model, checkpoint)
    assert report.initialised == ["head.fc.bias", "head.fc.weight", "head.fc_norm.bias", "head.fc_norm.weight"]
    assert {k.split(".")[0] for k in report.dropped} == {"encoder", "clip_decoder"}
    assert not model.config.final_norm


def test_k710_head_slicing() -> None:
    state = _random_state(MANIFESTS["finetune_b16_f8_224"])
    state["head.weight"], state["head.bias"] = torch.randn(710, 768), torch.randn(710)
    model = umt.create_model("umt_b16", state, num_classes=400, head_mode="k710_to_k400", device="meta")
    torch.testing.assert_close(model.head.fc.weight, state["head.weight"][:400])
    with pytest.raises(CheckpointError, match=r"head.fc.weight: checkpoint \[710, 768\] vs model \[400, 768\]"):
        umt.create_model("umt_b16", state, num_classes=400, device="meta")


def _tiny_file(tmp_path: Path, **options) -> Path:
    return write_official_classifier(tmp_path / "tiny.pth", **options)


def test_truncated_file(tmp_path: Path) -> None:
    path = _tiny_file(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        umt.create_model("umt_b16", path, **TINY)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        umt.create_model("umt_b16", tmp_path / "absent.pth")


def test_file_of_another_size(tmp_path: Path) -> None:
    path = _tiny_file(tmp_path, embed_dim=48, num_heads=3)
    with pytest.raises(CheckpointError) as error:
        umt.create_model("umt_b16", path, **TINY)
    message = str(error.value)
    assert "embed_dim 48, depth 2; the model has embed_dim 32" in message
    assert "encoder.patch_embed.proj.weight: checkpoint [48, 3, 1, 16, 16] vs model [32, 3, 1, 16, 16]" in message


def test_file_of_another_depth(tmp_path: Path) -> None:
    path = _tiny_file(tmp_path, depth=3)
    with pytest.raises(CheckpointError, match=r"not in the model: \[encoder.blocks.\*\]"):
        umt.create_model("umt_b16", path, **TINY)


@pytest.mark.parametrize("state", [
    {"conv1.weight": torch.zeros(4, 3, 16, 16), "class_embedding": torch.zeros(4)},  # a CLIP visual tower
    {"patch_embed.proj.weight": torch.zeros(4, 3, 1, 16, 16), "norm.weight": torch.zeros(4)},  # AVA detector
])
def test_file_of_another_family(state: dict) -> None:
    with pytest.raises(CheckpointError, match=r"unrecognised layout.*Understood: official classifier"):
        umt.create_model("umt_b16", state, **TINY)


class TrainingArgs:
    """Stands for the Python objects (configs, EasyDicts) trainers pickle beside the weights."""


def test_python_objects_need_trust(tmp_path: Path) -> None:
    path = _tiny_file(tmp_path)
    torch.save(torch.load(path, weights_only=True) | {"args": TrainingArgs()}, path)
    with pytest.raises(CheckpointError, match="trust_pickle=True"):
        read_checkpoint(path)
    assert read_checkpoint(path, trust_pickle=True).family == "finetune"


def test_pos_embed_of_other_frames_names_the_fix() -> None:
    state = _random_state(MANIFESTS["finetune_b16_f16_224"])
    with pytest.raises(CheckpointError, match=r"3136 tokens = 16 frames of 196 tokens; set num_frames"):
        umt.create_model("umt_b16", state, num_frames=8, device="meta")
    model = umt.create_model("umt_b16", state, num_frames=16, pos_embed="interpolate", device="meta")
    assert model.config.pos_embed == "interpolate"  # the file's table dropped, the model computes its own


def test_native_round_trip(tmp_path: Path, tiny_video: torch.Tensor) -> None:
    model = umt.create_model("umt_b16", _tiny_file(tmp_path), **TINY).eval()
    save_native(model, tmp_path / "native.pt", "umt_b16")
    again = umt.create_model("umt_b16", tmp_path / "native.pt").eval()
    assert again.config == model.config
    torch.testing.assert_close(again(tiny_video), model(tiny_video))
    with pytest.raises(CheckpointError, match="holds a umt_b16 model, not umt_l16"):
        umt.create_model("umt_l16", tmp_path / "native.pt")
