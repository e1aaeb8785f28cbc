"""VideoViT: attention, masking, returned layers, checkpointing, position tables, input checks."""

from __future__ import annotations

import math

import pytest
import torch

import umt
from conftest import TINY
from umt.models.pos_embed import extended_table, interpolated_table, sinusoid_table
from umt.models.vit import Attention


def test_sdpa_attention_equals_explicit_softmax() -> None:
    torch.manual_seed(0)
    attention = Attention(32, num_heads=4)
    torch.nn.init.normal_(attention.q_bias)
    torch.nn.init.normal_(attention.v_bias)
    x = torch.randn(2, 10, 32)
    q, k, v = attention.qkv_heads(x)
    weights = (q @ k.transpose(-2, -1) / math.sqrt(8)).softmax(-1)
    expected = attention.proj((weights @ v).transpose(1, 2).reshape(2, 10, 32))
    torch.testing.assert_close(attention(x), expected)
    # k carries no bias: shifting v_bias moves v only, q_bias moves q only
    torch.testing.assert_close(k, x.matmul(attention.qkv.weight[32:64].T).reshape(2, 10, 4, 8).transpose(1, 2))


def test_forward_shapes_and_features(tiny_video: torch.Tensor) -> None:
    model = umt.create_model("umt_b16", **TINY).eval()
    assert model(tiny_video).shape == (2, 3)
    out = model.encode(tiny_video)
    assert out.tokens.shape == (2, 4 * 4 * 4, 32) and out.grid == (4, 4, 4)
    assert model.forward_features(tiny_video).shape == (2, 32)
    per_frame = model.forward_features(tiny_video, per_frame=True)
    assert per_frame.shape == (2, 4, 32)
    features = umt.create_model("umt_b16", **(TINY | {"num_classes": 0})).eval()
    assert features(tiny_video).shape == (2, 32)


def test_mask_keeps_visible_tokens_in_order(tiny_video: torch.Tensor) -> None:
    model = umt.create_model("umt_b16", **TINY).eval()
    mask = torch.zeros(2, 64, dtype=torch.bool)
    torch.testing.assert_close(model.encode(tiny_video, mask).tokens, model.encode(tiny_video).tokens)
    mask[:, ::4] = True
    out = model.encode(tiny_video, mask)
    assert out.tokens.shape == (2, 48, 32)
    # the blocks see exactly the visible embeddings, in their original order
    x = (model.encoder.patch_embed(tiny_video) + model.encoder.pos_embed)[:, ~mask[0]]
    for block in model.encoder.blocks:
        x = block(x)
    torch.testing.assert_close(out.tokens, x)
    with pytest.raises(ValueError, match="mask must be bool"):
        model.encode(tiny_video, mask.float())


def test_returned_layers_ascending_and_normed(tiny_video: torch.Tensor) -> None:
    model = umt.create_model("umt_b16", **(TINY | {"depth": 3, "final_norm": True})).eval()
    out = model.encoder(tiny_video, return_layers=(-1, 0))
    assert len(out.layers) == 2
    torch.testing.assert_close(out.layers[1], out.tokens)
    x = model.encoder.patch_embed(tiny_video) + model.encoder.pos_embed
    torch.testing.assert_close(out.layers[0], model.encoder.norm(model.encoder.blocks[0](x)))


def test_activation_checkpointing_gives_same_gradients(tiny_video: torch.Tensor) -> None:
    grads = []
    for blocks in (0, 2):
        torch.manual_seed(0)
        model = umt.create_model("umt_b16", **(TINY | {"checkpoint_blocks": blocks})).train()
        model(tiny_video).square().sum().backward()
        grads.append(model.encoder.blocks[0].attn.qkv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_frames_head_classifies_the_per_frame_tokens_in_order(tiny_video: torch.Tensor) -> None:
    model = umt.create_model("umt_b16", **TINY, head_pool="frames", head_init_scale=1.0).eval()
    assert model.head.fc.in_features == TINY["num_frames"] * TINY["embed_dim"]
    with torch.no_grad():
        per_frame = model.forward_features(tiny_video, per_frame=True)  # [B, T, C]
        torch.testing.assert_close(model(tiny_video), model.head.fc(per_frame.flatten(1)))
        swapped = model.head.fc(per_frame.flip(1).flatten(1))
    assert not torch.allclose(model(tiny_video), swapped)
    features = umt.create_model("umt_b16", **{**TINY, "num_classes": 0}, head_pool="frames")(tiny_video)
    assert features.shape == (2, TINY["num_frames"] * TINY["embed_dim"])


def test_drop_path_is_linear_and_off_in_eval(tiny_video: torch.Tensor) -> None:
    model = umt.create_model("umt_b16", **(TINY | {"depth": 3, "drop_path_rate": 0.3}))
    assert [getattr(b.drop_path, "drop_prob", 0.0) for b in model.encoder.blocks] == pytest.approx([0, 0.15, 0.3])
    model.eval()
    torch.testing.assert_close(model(tiny_video), model(tiny_video))


@pytest.mark.parametrize("shape", [(2, 3, 8, 64, 64), (2, 3, 4, 32, 64), (2, 1, 4, 64, 64), (3, 4, 64, 64)])
def test_wrong_video_shape_is_a_clear_error(shape: tuple[int, ...]) -> None:
    model = umt.create_model("umt_b16", **TINY)
    with pytest.raises(ValueError, match=r"expected a video \[B, 3, 4, 64, 64\], got"):
        model(torch.zeros(shape))


def test_images_only_for_stage2_tables() -> None:
    stage2 = umt.create_model("umt_b16", **(TINY | {"pos_embed": "extend", "final_norm": True}))
    assert stage2.encode(torch.zeros(1, 3, 1, 64, 64)).tokens.shape == (1, 16, 32)
    with pytest.raises(ValueError, match="or 1 frame"):
        stage2(torch.zeros(1, 3, 2, 64, 64))


def test_sinusoid_closed_form() -> None:
    table = sinusoid_table(1568, 64)
    for p, j in [(0, 0), (1, 1), (7, 10), (1567, 63), (1000, 31)]:
        angle = p / 10000 ** (2 * (j // 2) / 64)
        assert table[p, j].item() == pytest.approx(math.sin(angle) if j % 2 == 0 else math.cos(angle), abs=1e-6)


def test_tables_reduce_to_the_plain_sinusoid() -> None:
    torch.testing.assert_close(interpolated_table(8, (14, 14), 32), sinusoid_table(1568, 32))
    torch.testing.assert_close(extended_table(12, (14, 14), 32), sinusoid_table(12 * 196, 32))
    from_four = extended_table(8, (14, 14), 32, ckpt_num_frames=4).reshape(8, 196, 32)
    four = sinusoid_table(4 * 196, 32).reshape(4, 196, 32)
    # linear, align_corners=False: output frame 1 sits at 0.25 of the way from input frame 0 to 1
    torch.testing.assert_close(from_four[1], 0.75 * four[0] + 0.25 * four[1])


@pytest.mark.parametrize(("options", "error"), [
    ({"embed_dim": 30, "num_heads": 4}, ValueError),
    ({"img_size": 100}, ValueError),
    ({"pos_embed": "learned"}, ValueError),
    ({"head_pool": "max"}, ValueError),
    ({"hidden": 3}, TypeError),
])
def test_bad_config(options: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        umt.create_model("umt_b16", **options)


def test_unknown_model_name() -> None:
    with pytest.raises(KeyError, match="known models: umt_b16, umt_l16"):
        umt.create_model("umt_h14")
    assert umt.list_models() == ["umt_b16", "umt_l16"]


def test_named_sizes_parameter_counts() -> None:
    b16 = umt.create_model("umt_b16", num_classes=0, device="meta")
    l16 = umt.create_model("umt_l16", num_classes=0, device="meta")
    count = lambda m: sum(p.numel() for p in m.encoder.parameters())  # noqa: E731
    assert round(count(b16) / 1e6, 1) == 85.6  # SPEC.md §1.1, backbone only
    assert round(count(l16) / 1e6, 1) == 303.1
