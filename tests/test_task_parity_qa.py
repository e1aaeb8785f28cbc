"""Parity with the official UMT task models: every ``qa_model`` and ``mc_model`` case of the task reference file."""

from __future__ import annotations

import os

import pytest
import torch

from conftest import REPO
from umt.checkpoints import load_video_text_weights, read_video_text_checkpoint
from umt.models.config import ModelConfig
from umt.models.multiple_choice import multiple_choice_scores
from umt.models.qa import QAConfig, VideoQAModel
from umt.models.text import TextConfig
from umt.models.video_text import VideoTextConfig, VideoTextModel
from umt.qa_checkpoints import load_qa_weights, read_qa_checkpoint

ATOL, RTOL = 1e-5, 1e-4
TASK_REFERENCE = os.environ.get("UMT_TASK_REFERENCE", str(REPO.parent / "shared" / "reference" / "official_tasks.pt"))
CASES: dict[str, dict] = torch.load(TASK_REFERENCE, weights_only=True)
QA_CASES = [pytest.param(name, id=name) for name, case in CASES.items() if case["kind"] == "qa_model"]
MC_CASES = [pytest.param(name, id=name) for name, case in CASES.items() if case["kind"] == "mc_model"]


def vision_config(c: dict) -> ModelConfig:
    """The stage-2 video encoder sizes of a case."""
    return ModelConfig(embed_dim=c["embed_dim"], depth=c["depth"], num_heads=c["num_heads"],
                       num_frames=c["num_frames"], img_size=c["img_size"], patch_size=c["patch_size"],
                       tubelet_size=c["tubelet_size"], final_norm=True, pos_embed="extend", num_classes=0)


def text_config(c: dict) -> TextConfig:
    """The BERT sizes of a case."""
    return TextConfig(vocab_size=c["vocab_size"], hidden_size=c["text_width"], num_layers=c["text_layers"],
                      num_heads=c["text_heads"], intermediate_size=c["text_intermediate"],
                      max_positions=c["max_positions"], fusion_layer=c["fusion_layer"], encoder_width=c["embed_dim"],
                      layer_norm_eps=c["layer_norm_eps"], pad_token_id=c.get("pad_token_id", 0))


def qa_model(case: dict, state: dict) -> VideoQAModel:
    """A QA model of the case's sizes with ``state`` (an official QA or stage-2 state dict) loaded strictly."""
    c = case["config"]
    model = VideoQAModel(QAConfig(vision_config(c), text_config(c), k=c["k"], cls_token_id=c["cls_token_id"]))
    load_qa_weights(model, read_qa_checkpoint({"model": state}))
    return model.eval()


def run_qa(model: VideoQAModel, inputs: dict) -> dict[str, torch.Tensor]:
    """Every ``qa_model`` output, computed as the case notes describe."""
    q_mask, a_ids, a_mask = inputs["question_mask"], inputs["answer_ids"], inputs["answer_mask"]
    with torch.no_grad():
        tokens = model.encode_video(inputs["video"].float())
        states = model.encode_question(inputs["question_ids"], q_mask, tokens)
        topk_ids, topk_probs, first = model.rank_answers(states, q_mask, a_ids, a_mask)
        rows = inputs["train_answers"]
        loss = model.answer_loss(states, q_mask, a_ids[rows], a_mask[rows], inputs["train_answers_per_question"],
                                 inputs["train_weights"])
    return {"video_tokens": tokens, "question_states": states, "first_token_logits": first, "topk_ids": topk_ids,
            "topk_probs": topk_probs, "train_loss": loss}


def assert_outputs(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    for name, want in expected.items():
        if want.dtype in (torch.int64, torch.int32):
            assert torch.equal(actual[name], want), f"{name}: {actual[name].tolist()} != {want.tolist()}"
        else:
            torch.testing.assert_close(actual[name], want.float(), atol=ATOL, rtol=RTOL,
                                       msg=lambda message, name=name: f"{name}: {message}")


def test_reference_has_cases() -> None:
    assert QA_CASES, f"{TASK_REFERENCE} has no qa_model case"
    assert MC_CASES, f"{TASK_REFERENCE} has no mc_model case"


@pytest.mark.parametrize("name", QA_CASES)
def test_qa_outputs(name: str) -> None:
    case = CASES[name]
    assert set(case["outputs"]) == {"video_tokens", "question_states", "first_token_logits", "topk_ids",
                                    "topk_probs", "train_loss"}
    assert_outputs(run_qa(qa_model(case, case["state_dict"]), case["inputs"]), case["outputs"])


@pytest.mark.parametrize("name", QA_CASES)
def test_qa_outputs_from_stage2(name: str) -> None:
    case = CASES[name]
    assert_outputs(run_qa(qa_model(case, case["stage2_state_dict"]), case["inputs"]), case["outputs_from_stage2"])


@pytest.mark.parametrize("name", MC_CASES)
def test_mc_outputs(name: str) -> None:
    case = CASES[name]
    c = case["config"]
    model = VideoTextModel(VideoTextConfig(vision_config(c), text_config(c), embed_dim=c["proj_dim"]))
    load_video_text_weights(model, read_video_text_checkpoint({"model": case["state_dict"]}))
    inputs = case["inputs"]
    with torch.no_grad():
        out = multiple_choice_scores(model.eval(), inputs["video"].float(), inputs["option_ids"], inputs["option_mask"])
    assert out.scores.shape == (inputs["video"].shape[0], c["num_options"])
    assert set(case["outputs"]) == {"itc_probs", "itm_probs", "scores", "prediction"}
    assert_outputs(vars(out), case["outputs"])
