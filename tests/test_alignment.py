"""UTA alignment head (parity with the official stage-1 student, key mapping, images) and the UTA loss."""

from __future__ import annotations

import json

import pytest
import torch

import umt
from conftest import KEYS_MANIFEST, TINY, load_reference
from umt.checkpoints import CheckpointError
from umt.heads.alignment import AlignmentHead, alignment_layers, alignment_state_from_official
from umt.heads.base import HeadContext
from umt.losses import uta_loss
from umt.masking import random_mask
from umt.models.pos_embed import sinusoid_table

ATOL, RTOL = 1e-5, 1e-4
CASES = load_reference()
STUDENT_CASES = [pytest.param(name, id=name) for name, case in CASES.items() if case["kind"] == "pretrain_student"]


def make_head(config: umt.ModelConfig, out_dim: int, num_layers: int = 6, **options) -> AlignmentHead:
    """An alignment head over an encoder of ``config`` with a teacher of width ``out_dim``."""
    context = HeadContext("alignment", config.embed_dim, config.depth, config.num_frames, config.tubelet_size,
                          config.grid, teacher_dim=out_dim)
    return AlignmentHead(context, num_layers=num_layers, **options)


def test_reference_has_student_cases() -> None:
    assert STUDENT_CASES, "the reference file holds no pretrain_student case"


@pytest.mark.parametrize("name", STUDENT_CASES)
def test_pretrain_student_parity(name: str) -> None:
    case = CASES[name]
    config, state, inputs = case["config"], case["state_dict"], case["inputs"]
    sizes = ("embed_dim", "depth", "num_heads", "num_frames", "img_size", "patch_size", "tubelet_size",
             "mlp_ratio", "norm_eps", "qkv_bias")
    model = umt.create_model("umt_b16", **{k: config[k] for k in sizes if k in config}, final_norm=True,
                             pos_embed="extend", num_classes=0).eval()
    model.encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in state.items()
                                   if k.startswith("encoder.")}, strict=True)
    head = make_head(model.config, config["align_dim"], config["align_layers"], norm_eps=1e-6, normalize=True).eval()
    head.load_state_dict(alignment_state_from_official(state), strict=True)
    layers = alignment_layers(config["depth"], config["align_layers"])
    with torch.no_grad():
        out = model.encoder(inputs["video"].float(), mask=inputs["mask"], return_layers=layers)
        aligned = head.align(out.layers, out.grid, inputs["mask"])
    expected = case["outputs"]["aligned"]
    assert aligned.shape == expected.shape
    torch.testing.assert_close(aligned, expected, atol=ATOL, rtol=RTOL)


def test_alignment_layers() -> None:
    assert alignment_layers(12) == [6, 7, 8, 9, 10, 11]
    assert alignment_layers(24) == [18, 19, 20, 21, 22, 23]
    assert alignment_layers(12, 3, interval=2) == [7, 9, 11]
    with pytest.raises(ValueError, match="depth-4"):
        alignment_layers(4, 6)


@pytest.mark.parametrize(("manifest", "prefix"), [("pretrain_b16_f8_224", ""), ("pretrain_l16_f8_224", ""),
                                                  ("mm_vision_b16_f4_224", "vision_encoder."),
                                                  ("mm_vision_l16_f4_224", "")])
def test_official_key_mapping(manifest: str, prefix: str) -> None:
    shapes = json.loads(KEYS_MANIFEST.read_text())[manifest]
    state = {prefix + key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    width, out_dim = shapes["clip_decoder.0.head.weight"][::-1]
    head = make_head(umt.ModelConfig(embed_dim=width, depth=12, num_heads=width // 64), out_dim)
    mapped = alignment_state_from_official(state)
    assert {k: list(v.shape) for k, v in mapped.items()} == {k: list(v.shape) for k, v in head.state_dict().items()}
    assert mapped["heads.5.norm.bias"] is state[prefix + "clip_decoder.5.norm.bias"]


def test_official_mapping_without_heads() -> None:
    with pytest.raises(CheckpointError, match="clip_decoder"):
        alignment_state_from_official({"encoder.norm.weight": torch.ones(4)})


def _tiny_encoder() -> umt.VideoViT:
    return umt.create_model("umt_b16", **TINY, final_norm=True, pos_embed="extend").encoder.eval()


def test_head_on_image() -> None:
    """Images (T = 1) get the one-frame table at their visible positions; the output is unit-norm."""
    encoder = _tiny_encoder()
    head = make_head(encoder.config, 8, num_layers=2)
    image = torch.randn(2, 3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    mask = random_mask(2, 16, 0.5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = encoder(image, mask=mask, return_layers=alignment_layers(TINY["depth"], 2))
        aligned = head.align(out.layers, out.grid, mask)
        table = sinusoid_table(16, TINY["embed_dim"]).expand(2, -1, -1)[~mask].reshape(2, 8, -1)
        expected = torch.nn.functional.normalize(head.heads[1](out.layers[1] + table), dim=-1)
    assert aligned.shape == (2, 2, 8, 8)
    torch.testing.assert_close(aligned[1], expected)
    torch.testing.assert_close(aligned.norm(dim=-1), torch.ones(2, 2, 8))


def test_head_stage2_options_and_init() -> None:
    """``normalize=False`` returns the LayerNorm output (stage 2); init is xavier / zero bias / LN 1-0."""
    encoder = _tiny_encoder()
    head = make_head(encoder.config, 8, num_layers=2, norm_eps=1e-5, normalize=False)
    assert head.heads[0].norm.eps == 1e-5 and not head.state_dict().keys() & {"pos_embed"}
    assert head.heads[0].head.bias.eq(0).all() and head.heads[0].norm.weight.eq(1).all()
    bound = (6 / (TINY["embed_dim"] + 8)) ** 0.5
    assert head.heads[0].head.weight.abs().max() <= bound
    video = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        out = encoder(video, return_layers=alignment_layers(TINY["depth"], 2))
        aligned = head.align(out.layers, out.grid)
    assert aligned.shape == (2, 2, 64, 8)
    torch.testing.assert_close(aligned.mean(-1), torch.zeros(2, 2, 64), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="recorded layers"):
        head.align(encoder(video, return_layers=[1]).layers, out.grid)
    with pytest.raises(ValueError, match="mask must be bool"):
        head.align(out.layers, out.grid, torch.zeros(2, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="needs a teacher"):
        AlignmentHead(HeadContext.from_config(encoder.config))


def test_uta_loss_values_and_gradient() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 5, 8, generator=generator)
    torch.testing.assert_close(uta_loss(x, 3 * x), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(uta_loss(x, -x), torch.tensor(4.0))
    a, b = torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4)
    a[..., 0], b[..., 1] = 1.0, 2.0
    torch.testing.assert_close(uta_loss(a, b), torch.tensor(2.0))
    student = torch.randn(2, 2, 3, 8, generator=generator, requires_grad=True)
    loss = uta_loss(student, torch.randn(2, 2, 3, 8, generator=generator))
    loss.backward()
    assert loss.ndim == 0 and 0 < loss.item() < 4
    assert student.grad is not None and student.grad.isfinite().all() and student.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="shapes differ"):
        uta_loss(x, x[:1])
