"""The CLIP teacher: parity with the official teacher, weight loading, freezing and resizing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import load_reference
from umt.checkpoints import CheckpointError
from umt.models.teacher import (
    TEACHER_CONFIGS,
    CLIPTeacher,
    TeacherConfig,
    create_teacher,
    load_teacher_weights,
)

CASES = {name: case for name, case in load_reference().items() if case["kind"] == "clip_teacher"}
TINY = TeacherConfig(width=32, layers=2, heads=2, output_dim=16, patch_size=16, image_size=64, return_layers=2)


def _visual_state(teacher: CLIPTeacher) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in teacher.visual.state_dict().items()}


def test_reference_has_teacher_cases() -> None:
    assert CASES, "the reference file holds no clip_teacher case"


@pytest.mark.parametrize("name", sorted(CASES))
def test_parity_with_official_teacher(name: str) -> None:
    case = CASES[name]
    options = dict(case["config"])
    num_frames = options.pop("num_frames")
    teacher = CLIPTeacher(TeacherConfig(**options))
    load_teacher_weights(teacher, case["state_dict"])
    video = case["inputs"]["video"].float()
    assert video.shape[2] == num_frames
    out = teacher(video)
    expected = case["outputs"]
    torch.testing.assert_close(out.features, expected["features"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.cls_attention, expected["cls_attention"], atol=1e-5, rtol=1e-4)


def test_named_configs() -> None:
    assert TEACHER_CONFIGS["clip_b16"].grid == 14
    assert TEACHER_CONFIGS["clip_l14"].grid == 14
    assert (TEACHER_CONFIGS["clip_l14"].width, TEACHER_CONFIGS["clip_l14"].output_dim) == (1024, 768)
    with pytest.raises(TypeError, match="unknown teacher option"):
        create_teacher("clip_b16", depth=2)
    with pytest.raises(ValueError, match="return_layers"):
        TeacherConfig(layers=2, return_layers=3)


def test_loads_full_clip_state_dict_with_text_tower() -> None:
    source = CLIPTeacher(TINY)
    full = {f"visual.{key}": value for key, value in _visual_state(source).items()}
    full |= {"positional_embedding": torch.zeros(77, 32), "token_embedding.weight": torch.zeros(10, 32),
             "logit_scale": torch.tensor(1.0)}
    teacher = CLIPTeacher(TINY)
    load_teacher_weights(teacher, {"state_dict": {f"module.{key}": value for key, value in full.items()}})
    for key, value in teacher.visual.state_dict().items():
        torch.testing.assert_close(value, full[f"visual.{key}"], atol=0, rtol=0)


def test_loads_official_5d_stem_from_path(tmp_path: Path) -> None:
    state = _visual_state(CLIPTeacher(TINY))
    official = state | {"conv1.weight": state["conv1.weight"].unsqueeze(2)}
    torch.save(official, tmp_path / "vit_tiny.pth")
    teacher = CLIPTeacher(TINY)
    load_teacher_weights(teacher, tmp_path / "vit_tiny.pth")
    torch.testing.assert_close(teacher.visual.conv1.weight, state["conv1.weight"], atol=0, rtol=0)


def test_positional_embedding_resized_16_to_14() -> None:
    config = TeacherConfig(width=32, layers=1, heads=2, output_dim=16, patch_size=14, image_size=196, return_layers=1)
    state = _visual_state(CLIPTeacher(config))
    state["positional_embedding"] = torch.cat((torch.full((1, 32), -2.0), torch.full((256, 32), 0.5)))
    teacher = CLIPTeacher(config)
    load_teacher_weights(teacher, state)
    table = teacher.visual.positional_embedding
    assert table.shape == (197, 32)
    torch.testing.assert_close(table[0], torch.full((32,), -2.0), atol=0, rtol=0)
    torch.testing.assert_close(table[1:], torch.full((196, 32), 0.5))


def test_wrong_shape_names_key_and_shapes() -> None:
    state = _visual_state(CLIPTeacher(TINY)) | {"proj": torch.zeros(32, 8)}
    with pytest.raises(CheckpointError, match=r"proj: checkpoint \[32, 8\] vs teacher \[32, 16\]"):
        load_teacher_weights(CLIPTeacher(TINY), state)


def test_missing_and_unexpected_keys_are_named() -> None:
    state = _visual_state(CLIPTeacher(TINY))
    del state["ln_post.weight"]
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint: ln_post\.weight"):
        load_teacher_weights(CLIPTeacher(TINY), state)
    state = _visual_state(CLIPTeacher(TINY)) | {"attnpool.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"not in the teacher: attnpool\.weight"):
        load_teacher_weights(CLIPTeacher(TINY), state)


def test_frozen_and_always_eval() -> None:
    teacher = CLIPTeacher(TINY)
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    video = torch.randn(1, 3, 2, 64, 64, requires_grad=True)
    out = teacher(video)
    assert out.features.grad_fn is None and out.cls_attention.grad_fn is None
    assert out.features.shape == (2, 1, 2 * 16, 16) and out.cls_attention.shape == (2, 16)
    torch.testing.assert_close(out.features.norm(dim=-1), torch.ones(2, 1, 32))
    assert (out.cls_attention >= 0).all() and (out.cls_attention.sum(-1) < 1).all()  # the CLS column is dropped


def test_resizes_224_input_to_196_teacher() -> None:
    teacher = create_teacher("clip_l14", width=32, layers=2, heads=2, output_dim=16, return_layers=2)
    out = teacher(torch.randn(1, 3, 2, 224, 224))
    assert out.features.shape == (2, 1, 2 * 196, 16)
    assert out.cls_attention.shape == (2, 196)


def test_projecting_only_the_visible_tokens_matches_the_full_targets() -> None:
    """``encode`` + ``project(mask)`` (what a training step runs) gives ``forward``'s targets at the kept tokens, and
    the SDPA blocks' CLS row gives the weights ``nn.MultiheadAttention`` returns."""
    torch.manual_seed(0)
    teacher = CLIPTeacher(TINY)
    video = torch.randn(2, 3, 3, 64, 64)
    full = teacher(video)
    mask = torch.rand(2, 3 * 16).argsort(1) >= 10  # 10 of the 48 tokens kept per clip
    hidden = teacher.encode(video)
    visible = teacher.project(hidden, mask)
    assert visible.shape == (2, 2, 10, 16)
    torch.testing.assert_close(visible, full.features[:, ~mask].reshape(2, 2, 10, 16))
    block, last = teacher.visual.transformer.resblocks[-1], hidden.layers[-2]
    y = block.ln_1(last)
    _, weights = block.attn(y, y, y, need_weights=True, average_attn_weights=True)
    torch.testing.assert_close(hidden.cls_attention, weights[:, 0, 1:])
