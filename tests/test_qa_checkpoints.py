"""Video-QA checkpoints: full-size official manifests load strictly, wrappers, stage-2 init, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from test_task_parity_qa import CASES, QA_CASES, qa_model

from conftest import REPO
from umt.checkpoints import CheckpointError
from umt.models.config import ModelConfig
from umt.models.qa import QA_CONFIGS, QAConfig, VideoQAModel, create_qa_model
from umt.models.text import TextConfig
from umt.models.video_text import VideoTextConfig, VideoTextModel
from umt.qa_checkpoints import load_qa_weights, read_qa_checkpoint, stage2_fusion_layer, stage2_to_qa

TASK_KEYS = REPO.parent / "shared" / "reference" / "official_task_keys.json"
MANIFESTS = {"qa_b16_f12_224": "umt_b16", "qa_l16_f12_224": "umt_l16"}


def meta_state(manifest: str) -> dict[str, torch.Tensor]:
    """Tensors of the manifest's shapes on the meta device (no memory)."""
    shapes = json.loads(TASK_KEYS.read_text())[manifest]
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


@pytest.mark.parametrize("wrapper", ["model", "module", "bare"])
@pytest.mark.parametrize("manifest", list(MANIFESTS))
def test_full_size_manifest_loads_strictly(manifest: str, wrapper: str) -> None:
    state = meta_state(manifest)
    obj = state if wrapper == "bare" else {wrapper: state}
    with torch.device("meta"):
        model = VideoQAModel(QA_CONFIGS[MANIFESTS[manifest]])
    report = load_qa_weights(model, read_qa_checkpoint(obj))
    assert report.family == "mm_qa"
    assert all(key.endswith("position_ids") for key in report.dropped)
    assert model.config.decoder_layers == (3 if manifest.startswith("qa_b16") else 5)
    assert model.text_decoder.bert.encoder.layer[0].crossattention is not None


def test_wrong_size_names_the_mismatch() -> None:
    state = meta_state("qa_b16_f12_224")
    with torch.device("meta"):
        model = VideoQAModel(QA_CONFIGS["umt_l16"])
    with pytest.raises(CheckpointError, match="does not fit the video-QA model"):
        load_qa_weights(model, read_qa_checkpoint(state))


@pytest.mark.parametrize("name", QA_CASES)
def test_stage2_init_copies_fusion_layers(name: str) -> None:
    case = CASES[name]
    stage2 = case["stage2_state_dict"]
    fusion = case["config"]["fusion_layer"]
    assert stage2_fusion_layer(stage2) == fusion
    converted = stage2_to_qa(stage2)
    for i in range(case["config"]["text_layers"] - fusion):
        key = f"encoder.layer.{fusion + i}.attention.self.query.weight"
        assert torch.equal(converted[f"text_decoder.bert.{key.replace(str(fusion + i), str(i), 1)}"],
                           stage2[f"text_encoder.bert.{key}"])
    assert torch.equal(converted["text_decoder.cls.predictions.transform.dense.weight"],
                       stage2["text_encoder.cls.predictions.transform.dense.weight"])
    assert not any(k.startswith(("text_encoder.bert.", "text_encoder.cls.")) for k in converted)
    checkpoint = read_qa_checkpoint(stage2)
    assert checkpoint.family == "mm_model"
    dropped = {k.split(".")[0] if not k.startswith("vision_encoder.") else ".".join(k.split(".")[:2])
               for k in checkpoint.dropped if not k.endswith("position_ids")}
    assert dropped == {"vision_encoder.pool_norm", "vision_encoder.clip_decoder", "vision_proj", "text_proj",
                       "itm_head", "temp"}


@pytest.mark.parametrize("name", QA_CASES)
def test_create_qa_model_from_file(name: str, tmp_path) -> None:
    case = CASES[name]
    path = tmp_path / "qa.pth"
    torch.save({"model": case["state_dict"]}, path)
    loaded = create_qa_model(qa_model(case, case["state_dict"]).config, path)
    for key, value in loaded.state_dict().items():
        if key.startswith("text_encoder.bert."):
            official = "text_encoder." + key.removeprefix("text_encoder.bert.")
            assert torch.equal(value, case["state_dict"][official])


def test_retrieval_and_classifier_files_fail_clearly() -> None:
    case = CASES[QA_CASES[0].values[0]]
    retrieval = {k.replace("text_encoder.bert.", "text_encoder."): v for k, v in case["stage2_state_dict"].items()
                 if not k.startswith("text_encoder.cls.")}
    with pytest.raises(CheckpointError, match="retrieval / multiple-choice model"):
        read_qa_checkpoint(retrieval)
    video_only = {k.removeprefix("vision_encoder."): v for k, v in case["stage2_state_dict"].items()
                  if k.startswith("vision_encoder.")}
    with pytest.raises(CheckpointError, match="without a text encoder"):
        read_qa_checkpoint(video_only)


def test_tied_decoder_must_match() -> None:
    case = CASES[QA_CASES[0].values[0]]
    state = dict(case["state_dict"])
    state["text_decoder.cls.predictions.decoder.weight"] = state["text_decoder.cls.predictions.decoder.weight"] + 1
    with pytest.raises(CheckpointError, match="tied"):
        read_qa_checkpoint(state)


def test_library_stage2_model_initialises_qa() -> None:
    vision = ModelConfig(embed_dim=32, depth=1, num_heads=2, num_frames=2, img_size=32, final_norm=True,
                         pos_embed="extend", num_classes=0)
    text = TextConfig(vocab_size=40, hidden_size=32, num_layers=3, num_heads=2, intermediate_size=64,
                      max_positions=16, fusion_layer=1, encoder_width=32)
    stage2 = VideoTextModel(VideoTextConfig(vision, text, embed_dim=16))
    qa = create_qa_model(QAConfig(vision, text), {"model": stage2.state_dict()})
    layer = stage2.text_encoder.bert.encoder.layer
    assert torch.equal(qa.text_decoder.bert.encoder.layer[1].output.dense.weight, layer[2].output.dense.weight)
    assert torch.equal(qa.text_encoder.bert.encoder.layer[0].output.dense.weight, layer[0].output.dense.weight)
    assert torch.equal(qa.text_decoder.cls.predictions.transform.dense.weight,
                       stage2.text_encoder.cls.predictions.transform.dense.weight)
    assert torch.equal(qa.text_decoder.cls.predictions.decoder.weight,
                       stage2.text_encoder.bert.embeddings.word_embeddings.weight)
    checkpoint = read_qa_checkpoint(stage2.state_dict())
    assert any(k.startswith("vision_encoder.head.fc_norm.") for k in checkpoint.dropped)
