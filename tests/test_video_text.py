"""Stage-2 video-text model: parity with the official UMT on every ``mm_model`` case, checkpoint families, errors."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import umt
from conftest import KEYS_MANIFEST, load_reference
from umt.checkpoints import TIED_KEYS, CheckpointError, load_video_text_weights, read_video_text_checkpoint
from umt.models.config import ModelConfig
from umt.models.text import TextConfig
from umt.models.video_text import VIDEO_TEXT_CONFIGS, VideoTextConfig, VideoTextModel

ATOL, RTOL = 1e-5, 1e-4
CASES = load_reference()
MM_CASES = [pytest.param(name, id=name) for name, case in CASES.items() if case["kind"] == "mm_model"]


def case_config(case: dict) -> VideoTextConfig:
    """The model sizes a reference case was generated with."""
    c = case["config"]
    vision = ModelConfig(embed_dim=c["embed_dim"], depth=c["depth"], num_heads=c["num_heads"],
                         num_frames=c["num_frames"], img_size=c["img_size"], patch_size=c["patch_size"],
                         tubelet_size=c["tubelet_size"], final_norm=True, pos_embed="extend", num_classes=0)
    text = TextConfig(vocab_size=c["vocab_size"], hidden_size=c["text_width"], num_layers=c["text_layers"],
                      num_heads=c["text_heads"], intermediate_size=c["text_intermediate"],
                      max_positions=c["max_positions"], fusion_layer=c["fusion_layer"], encoder_width=c["embed_dim"],
                      layer_norm_eps=c["layer_norm_eps"])
    return VideoTextConfig(vision, text, embed_dim=c["proj_dim"])


def run_case(model: VideoTextModel, case: dict) -> dict[str, torch.Tensor]:
    """Every output of the reference format, computed as its notes describe."""
    inputs = case["inputs"]
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        tokens, pooled = model.encode_video(inputs["video"].float())
        text = model.encode_text(ids, mask)
        return {
            "video_tokens": tokens, "video_pooled": pooled, "text_tokens": text,
            "sim_v2t": model.similarity(pooled, text),
            "itm_scores": model.itm_scores(tokens, text, mask),
            "mlm_logits": model.mlm_logits(ids, mask, tokens[:1].expand(len(ids), -1, -1)),
        }


def assert_outputs(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], names=None) -> None:
    for name in names or expected:
        torch.testing.assert_close(actual[name], expected[name].float(), atol=ATOL, rtol=RTOL,
                                   msg=lambda message, name=name: f"{name}: {message}")


@pytest.fixture(scope="module")
def first_case() -> dict:
    assert MM_CASES, "the reference file has no mm_model case"
    return CASES[MM_CASES[0].values[0]]


@pytest.mark.parametrize("name", MM_CASES)
def test_mm_model_parity(name: str) -> None:
    case = CASES[name]
    model = umt.create_video_text_model(case_config(case), case["state_dict"]).eval()
    outputs = run_case(model, case)
    assert set(case["outputs"]) <= set(outputs), f"outputs not computed: {set(case['outputs']) - set(outputs)}"
    assert_outputs(outputs, case["outputs"])


def test_stage2_checkpoint_report(first_case: dict) -> None:
    """Teacher, alignment heads and the legacy position ids are dropped and named; nothing is initialised."""
    state = dict(first_case["state_dict"]) | {"clip_teacher.proj": torch.zeros(3, 2)}
    checkpoint = read_video_text_checkpoint({"model": state})
    assert checkpoint.family == "mm_model"
    report = load_video_text_weights(VideoTextModel(case_config(first_case)), checkpoint)
    assert "clip_teacher.proj" in report.dropped and "text_encoder.bert.embeddings.position_ids" in report.dropped
    assert any(key.startswith("vision_encoder.clip_decoder.") for key in report.dropped)
    assert report.initialised == []


def test_retrieval_layout_loads_without_mlm_head(first_case: dict, caplog: pytest.LogCaptureFixture) -> None:
    """A retrieval fine-tuned file (``text_encoder.*`` without ``bert.``, no ``cls``) gives the same encoders."""
    state = {key.replace("text_encoder.bert.", "text_encoder."): value
             for key, value in first_case["state_dict"].items()
             if not key.startswith(("text_encoder.cls.", "vision_encoder.clip_decoder."))}
    with caplog.at_level(logging.INFO, logger="umt"):
        model = umt.create_video_text_model(case_config(first_case), state).eval()
    assert "mm_retrieval" in caplog.text and "text_encoder.cls.*" in caplog.text
    assert_outputs(run_case(model, first_case), first_case["outputs"],
                   ["video_tokens", "video_pooled", "text_tokens", "sim_v2t", "itm_scores"])


def test_other_checkpoints_are_refused(first_case: dict) -> None:
    config = case_config(first_case)
    state = first_case["state_dict"]
    vision_only = {k: v for k, v in state.items() if k.startswith("vision_encoder.")}
    with pytest.raises(CheckpointError, match=r"mm_vision video checkpoint .* umt\.create_model"):
        umt.create_video_text_model(config, vision_only)
    with pytest.raises(CheckpointError, match="video-QA model"):
        umt.create_video_text_model(config, state | {"text_decoder.cls.predictions.bias": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"not in the model: \[extra\.\*\]"):
        umt.create_video_text_model(config, state | {"extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint: \[itm_head\.\*\]"):
        umt.create_video_text_model(config, {k: v for k, v in state.items() if not k.startswith("itm_head.")})
    tied = "text_encoder.cls.predictions.decoder.weight"
    with pytest.raises(CheckpointError, match="are tied"):
        umt.create_video_text_model(config, state | {tied: state[tied] + 1})
    wider = VideoTextConfig(config.vision, config.text, embed_dim=config.embed_dim * 2)
    with pytest.raises(CheckpointError, match=r"vision_proj\.weight: checkpoint"):
        umt.create_video_text_model(wider, state)


def test_named_configs_and_their_errors() -> None:
    assert umt.VideoTextConfig is VideoTextConfig and umt.VideoTextModel is VideoTextModel
    base = VIDEO_TEXT_CONFIGS["umt_b16"]
    assert (base.text.fusion_layer, base.text.encoder_width, base.embed_dim, base.vision.num_frames) == (9, 768, 512, 4)
    large = VIDEO_TEXT_CONFIGS["umt_l16"]
    assert (large.text.fusion_layer, large.text.hidden_size, large.embed_dim, large.vision.embed_dim) == (
        19, 1024, 768, 1024)
    assert base.replace_vision(num_frames=12).vision.num_frames == 12
    with pytest.raises(KeyError, match="known: umt_b16, umt_l16"):
        umt.create_video_text_model("umt_h14")
    with pytest.raises(ValueError, match="encoder_width=768 differs"):
        VideoTextConfig(large.vision, base.text)
    with pytest.raises(ValueError, match="stage-2 encoder"):
        VideoTextConfig(base.vision.replace(final_norm=False), base.text)


def test_per_frame_similarity_and_temperature_clamp(first_case: dict) -> None:
    model = umt.create_video_text_model(case_config(first_case), first_case["state_dict"]).eval()
    inputs = first_case["inputs"]
    with torch.no_grad():
        _, per_frame = model.encode_video(inputs["video"].float(), per_frame=True)
        text = model.encode_text(inputs["input_ids"], inputs["attention_mask"])
        sim = model.similarity(per_frame, text)
        frames = [model.similarity(per_frame[:, [t]], text) for t in range(per_frame.shape[1])]
    assert per_frame.shape == (2, first_case["config"]["num_frames"], first_case["config"]["embed_dim"])
    torch.testing.assert_close(sim, torch.stack(frames).mean(0))
    for value, clamped in ((1.0, 0.5), (1e-5, 0.001), (0.2, 0.2)):
        with torch.no_grad():
            model.temp.fill_(value)
        model.clamp_temperature()
        assert model.temp.item() == pytest.approx(clamped)
    model.clamp_temperature()
    loss = model.similarity(per_frame, text).logsumexp(1).sum() + model.similarity(per_frame, text).t().sum()
    loss.backward()
    assert model.temp.grad is not None and model.temp.grad.abs() > 0


def test_images_and_shape_errors(first_case: dict) -> None:
    model = VideoTextModel(case_config(first_case)).eval()
    width, side = first_case["config"]["embed_dim"], first_case["config"]["img_size"]
    with torch.no_grad():
        tokens, pooled = model.encode_video(torch.randn(1, 3, 1, side, side))
    assert tokens.shape == (1, (side // first_case["config"]["patch_size"]) ** 2, width)
    assert pooled.shape == (1, 1, width)
    with pytest.raises(ValueError, match="expected a video"):
        model.encode_video(torch.zeros(1, 3, 2, 224, 224))
    with pytest.raises(ValueError, match=r"both be \[B, L\]"):
        model.encode_text(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 4))
    with pytest.raises(ValueError, match="expected video_pooled"):
        model.similarity(torch.zeros(2, 64), torch.zeros(3, 5, 64))
    with pytest.raises(ValueError, match="video_tokens must be"):
        model.itm_scores(torch.zeros(2, 10, 32), torch.zeros(3, 5, 64), torch.ones(3, 5))


@pytest.mark.parametrize(("name", "hidden", "layers", "fusion", "proj"),
                         [("umt_b16", 768, 12, 9, 512), ("umt_l16", 1024, 24, 19, 768)])
def test_full_size_keys(name: str, hidden: int, layers: int, fusion: int, proj: int) -> None:
    """Full-size models (built on the meta device) have the official stage-2 shapes (SPEC.md §5.3 d), and the
    official vision keys of the manifest map onto them one to one."""
    with torch.device("meta"):
        model = VideoTextModel(VIDEO_TEXT_CONFIGS[name])
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    width = shapes["vision_encoder.encoder.patch_embed.proj.bias"][0]
    prefix = "text_encoder.bert.encoder.layer."
    assert shapes["text_encoder.bert.embeddings.word_embeddings.weight"] == (30522, hidden)
    assert shapes["text_encoder.bert.embeddings.position_embeddings.weight"] == (512, hidden)
    assert {int(k.split(".")[4]) for k in shapes if k.startswith(prefix)} == set(range(layers))
    assert {int(k.split(".")[4]) for k in shapes if ".crossattention." in k} == set(range(fusion, layers))
    assert shapes[f"{prefix}{fusion}.crossattention.self.key.weight"] == (hidden, width)
    assert shapes["vision_proj.weight"] == (proj, width) and shapes["text_proj.weight"] == (proj, hidden)
    assert shapes["itm_head.weight"] == (2, hidden) and shapes["temp"] == ()
    manifest = json.loads(KEYS_MANIFEST.read_text())[f"mm_vision_{name.removeprefix('umt_')}_f4_224"]
    official = {"vision_encoder." + k: torch.empty(v, device="meta") for k, v in manifest.items()}
    official |= {k: v for k, v in model.state_dict().items()
                 if not k.startswith("vision_encoder.") and k not in TIED_KEYS}
    mapped = read_video_text_checkpoint(official).state_dict
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: v for k, v in shapes.items() if k not in TIED_KEYS}
