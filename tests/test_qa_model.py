"""Video-QA model (beyond parity): configs, loss and ranking properties, gradients, evaluation helpers, MC errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from umt.models.config import ModelConfig
from umt.models.multiple_choice import multiple_choice_scores
from umt.models.qa import QA_CONFIGS, QAConfig, VideoQAModel, create_qa_model
from umt.models.text import TextConfig
from umt.models.video_text import VideoTextConfig, VideoTextModel
from umt.qa_eval import ExactMatchAccuracy, prediction_records, write_predictions

VISION = ModelConfig(embed_dim=32, depth=1, num_heads=2, num_frames=2, img_size=32, final_norm=True,
                     pos_embed="extend", num_classes=0)
TEXT = TextConfig(vocab_size=40, hidden_size=32, num_layers=3, num_heads=2, intermediate_size=64, max_positions=16,
                  fusion_layer=1, encoder_width=32, dropout=0.0)


@pytest.fixture
def model() -> VideoQAModel:
    torch.manual_seed(0)
    return VideoQAModel(QAConfig(VISION, TEXT, k=4, cls_token_id=1)).eval()


@pytest.fixture
def inputs(model: VideoQAModel) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    video = torch.randn(2, 3, 2, 32, 32, generator=g)
    question = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]])
    answers = torch.tensor([[1, 10, 2, 0], [1, 11, 12, 2], [1, 13, 2, 0], [1, 14, 15, 2], [1, 16, 2, 0]])
    return {"video": video, "question": question, "question_mask": (question != 0).long(), "answers": answers,
            "answer_mask": (answers != 0).long()}


def test_full_configs_decoder_depth() -> None:
    assert QA_CONFIGS["umt_b16"].decoder_layers == 3 and QA_CONFIGS["umt_l16"].decoder_layers == 5
    assert QA_CONFIGS["umt_b16"].vision.num_frames == 12
    with pytest.raises(KeyError, match="umt_b16"):
        create_qa_model("umt_x")
    with pytest.raises(ValueError, match="no layer for the answer decoder"):
        QAConfig(VISION, TextConfig(hidden_size=32, num_layers=2, num_heads=2, fusion_layer=2, encoder_width=32))
    with pytest.raises(ValueError, match="encoder_width"):
        QAConfig(VISION, TextConfig(hidden_size=32, num_layers=2, num_heads=2, fusion_layer=1, encoder_width=48))


def test_state_dict_has_official_layout(model: VideoQAModel) -> None:
    keys = set(model.state_dict())
    assert "vision_encoder.encoder.patch_embed.proj.weight" in keys and not any("pool_norm" in k for k in keys)
    assert "text_encoder.bert.encoder.layer.1.crossattention.self.key.weight" in keys
    assert not any(k.startswith("text_encoder.cls.") for k in keys)
    assert {f"text_decoder.bert.encoder.layer.{i}.crossattention.self.query.weight" for i in range(2)} <= keys
    assert "text_decoder.bert.encoder.layer.2.attention.self.query.weight" not in keys


def test_pads_do_not_change_the_answer_nll(model: VideoQAModel, inputs: dict) -> None:
    with torch.no_grad():
        tokens = model.encode_video(inputs["video"])
        states = model.encode_question(inputs["question"], inputs["question_mask"], tokens)
        one = model.sequence_nll(inputs["answers"][:1, :3], inputs["answer_mask"][:1, :3], states[:1],
                                 inputs["question_mask"][:1])
        padded = model.sequence_nll(inputs["answers"][:1], inputs["answer_mask"][:1], states[:1],
                                    inputs["question_mask"][:1])
    torch.testing.assert_close(one, padded)


def test_ranking_is_a_distribution_over_the_best_first_tokens(model: VideoQAModel, inputs: dict) -> None:
    with torch.no_grad():
        tokens = model.encode_video(inputs["video"])
        states = model.encode_question(inputs["question"], inputs["question_mask"], tokens)
        ids, probs, first = model.rank_answers(states, inputs["question_mask"], inputs["answers"],
                                               inputs["answer_mask"])
        all_ids, _, _ = model.rank_answers(states, inputs["question_mask"], inputs["answers"], inputs["answer_mask"],
                                           k=99)
    assert ids.shape == probs.shape == (2, 4) and all_ids.shape == (2, 5)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))
    assert (probs[:, :-1] >= probs[:, 1:]).all()
    first_token = first.softmax(-1)[:, inputs["answers"][:, 1]]
    for q in range(2):  # the k kept answers are those with the most probable first tokens
        assert set(ids[q].tolist()) == set(first_token[q].topk(4).indices.tolist())


def test_loss_trains_every_part(model: VideoQAModel, inputs: dict) -> None:
    model.train()
    tokens = model.encode_video(inputs["video"])
    states = model.encode_question(inputs["question"], inputs["question_mask"], tokens)
    loss = model.answer_loss(states, inputs["question_mask"], inputs["answers"][:3], inputs["answer_mask"][:3],
                             torch.tensor([2, 1]), torch.tensor([0.5, 0.5, 1.0]))
    loss.backward()
    for name in ("vision_encoder.encoder.patch_embed.proj.weight",
                 "text_encoder.bert.embeddings.word_embeddings.weight",
                 "text_decoder.bert.encoder.layer.0.crossattention.self.key.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_multiple_choice_checks_rows() -> None:
    torch.manual_seed(0)
    vt = VideoTextModel(VideoTextConfig(VISION, TEXT, embed_dim=16)).eval()
    ids = torch.tensor([[1, 5, 2]] * 10)
    with torch.no_grad():
        out = multiple_choice_scores(vt, torch.randn(2, 3, 2, 32, 32), ids, torch.ones_like(ids))
        torch.testing.assert_close(out.itc_probs.sum(1), torch.ones(2))
        torch.testing.assert_close(out.scores, 0.7 * out.itm_probs + 0.3 * out.itc_probs)
        with pytest.raises(ValueError, match="option rows"):
            multiple_choice_scores(vt, torch.randn(3, 3, 2, 32, 32), ids, torch.ones_like(ids))


def test_accuracy_counts_missing_answers_wrong() -> None:
    metric = ExactMatchAccuracy()
    metric.update(torch.tensor([0, 2, 1]), torch.tensor([0, 1, -1]))
    metric.update(torch.tensor([3]), torch.tensor([3]))
    assert metric.compute().item() == pytest.approx(0.5)


def test_predictions_file(tmp_path: Path) -> None:
    records = prediction_records(["q1", "q2"], torch.tensor([[2, 0], [1, 2]]), ["man", "dog", "cat"])
    path = write_predictions(tmp_path / "out" / "qa.json", records)
    assert json.loads(path.read_text()) == [{"question_id": "q1", "answer": "cat"},
                                            {"question_id": "q2", "answer": "dog"}]
