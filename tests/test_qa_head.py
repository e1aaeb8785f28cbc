"""The ``qa`` and ``multiple_choice`` heads on ``UMTModule``: official files through ``read_parts`` reproduce the
task reference, manifests load strictly, training and evaluation run on the synthetic QA / MC data."""

from __future__ import annotations

import dataclasses
import json
from functools import partial

import lightning as L
import pytest
import torch
from test_qa_checkpoints import meta_state
from test_task_parity_qa import CASES, MC_CASES, QA_CASES, assert_outputs, text_config
from vt_helpers import encoder_config, minilm_folder
from vt_helpers import text_config as vt_text_config

from umt.checkpoints import read_parts
from umt.datamodules.qa import SyntheticQADataModule
from umt.heads.multiple_choice import MultipleChoiceHead
from umt.heads.qa import QAHead
from umt.heads.video_text import VideoTextHead
from umt.models.text import TextConfig
from umt.module import UMTModule
from umt.options import EncoderConfig, OptimizerConfig


def case_encoder(c: dict) -> EncoderConfig:
    """The stage-2 encoder of a reference case."""
    return EncoderConfig(embed_dim=c["embed_dim"], depth=c["depth"], num_heads=c["num_heads"],
                         num_frames=c["num_frames"], img_size=c["img_size"], patch_size=c["patch_size"],
                         tubelet_size=c["tubelet_size"], final_norm=True, pos_embed="extend", drop_path_rate=0.0)


def case_module(tmp_path, case: dict, state: dict, head) -> UMTModule:
    """A module of the case's sizes initialised from ``state`` saved as an official ``{"model": ...}`` file."""
    path = tmp_path / "official.pth"
    torch.save({"model": state}, path)
    return UMTModule([head], encoder=case_encoder(case["config"]), checkpoint=str(path)).eval()


@pytest.mark.parametrize("source", ["state_dict", "stage2_state_dict"])
@pytest.mark.parametrize("name", QA_CASES)
def test_qa_head_reproduces_reference(name: str, source: str, tmp_path) -> None:
    case = CASES[name]
    c, inputs = case["config"], case["inputs"]
    head = partial(QAHead, text=text_config(c), tokenizer=str(minilm_folder()), k=c["k"])
    module = case_module(tmp_path, case, case[source], head)
    qa = module.heads["qa"].qa
    qa.cls_token_id = c["cls_token_id"]
    q_mask, a_ids, a_mask = inputs["question_mask"], inputs["answer_ids"], inputs["answer_mask"]
    with torch.no_grad():
        tokens = module(inputs["video"].float()).tokens
        states = qa.encode_question(inputs["question_ids"], q_mask, tokens)
        topk_ids, topk_probs, first = qa.rank_answers(states, q_mask, a_ids, a_mask)
        rows = inputs["train_answers"]
        loss = qa.answer_loss(states, q_mask, a_ids[rows], a_mask[rows], inputs["train_answers_per_question"],
                              inputs["train_weights"])
    actual = {"video_tokens": tokens, "question_states": states, "first_token_logits": first, "topk_ids": topk_ids,
              "topk_probs": topk_probs, "train_loss": loss}
    assert_outputs(actual, case["outputs" if source == "state_dict" else "outputs_from_stage2"])


@pytest.mark.parametrize("name", MC_CASES)
def test_multiple_choice_head_reproduces_reference(name: str, tmp_path) -> None:
    case = CASES[name]
    c, inputs = case["config"], case["inputs"]
    head = partial(MultipleChoiceHead, text=text_config(c), tokenizer=str(minilm_folder()), embed_dim=c["proj_dim"])
    module = case_module(tmp_path, case, case["state_dict"], head)
    step = module(inputs["video"].float())
    out = module.heads["multiple_choice"].score_options(step, inputs["option_ids"], inputs["option_mask"])
    assert_outputs(vars(out), case["outputs"])


@pytest.mark.parametrize("wrapper", ["model", "module", "bare"])
def test_full_size_qa_manifest_reads_as_qa_parts(wrapper: str) -> None:
    state = meta_state("qa_b16_f12_224")
    parts = read_parts(state if wrapper == "bare" else {wrapper: state})
    assert parts.family == "mm_qa"
    assert "patch_embed.proj.weight" in parts.encoder
    assert {k.split(".")[0] for k in parts.rest} == {"text_encoder", "text_decoder"}
    assert parts.hints == {"final_norm": True, "pos_embed": "extend"}


@pytest.mark.parametrize("wrapper", ["model", "module", "bare"])
def test_full_size_qa_manifest_loads_into_the_module(wrapper: str, tmp_path) -> None:
    state = meta_state("qa_b16_f12_224")
    path = tmp_path / "qa_b16.pth"
    torch.save(state if wrapper == "bare" else {wrapper: state}, path)
    with torch.device("meta"):
        module = UMTModule([partial(QAHead, tokenizer=str(minilm_folder()))], EncoderConfig(num_frames=12),
                           checkpoint=str(path))
    head = module.heads["qa"]
    assert len(head.qa.text_decoder.bert.encoder.layer) == 3
    assert module.encoder.config.final_norm


def tiny_text() -> TextConfig:
    """A 2-layer BERT (1 text layer, 1 fusion layer: a 1-layer answer decoder) over the MiniLM vocabulary, as
    wide as the tiny video encoder (the official stage-2 -> QA init copies cross-attention: widths must agree)."""
    return TextConfig(vocab_size=30522, hidden_size=48, num_layers=2, num_heads=2, intermediate_size=96,
                      fusion_layer=1, encoder_width=48)


def test_qa_head_trains_and_writes_predictions(tmp_path) -> None:
    data = SyntheticQADataModule(tmp_path / "data", train_size=8, val_size=2, test_size=4, num_frames=4, img_size=32,
                                 batch_size=4, num_workers=0)
    predictions = tmp_path / "predictions.json"
    head = partial(QAHead, text=tiny_text(), tokenizer=str(minilm_folder()), k=3, predictions_file=str(predictions))
    module = UMTModule([head], encoder=encoder_config(), optimizer=OptimizerConfig(lr=1e-3, batch_scaled=False))
    before = {k: v.clone() for k, v in module.heads["qa"].state_dict().items()}
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                        default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    after = module.heads["qa"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if "text_decoder" in k)
    (metrics,) = trainer.test(module, datamodule=data, verbose=False)
    assert 0.0 <= metrics["test/qa/accuracy"] <= 1.0
    records = json.loads(predictions.read_text())
    expected = json.loads((tmp_path / "data" / "test_qa.json").read_text())
    assert sorted(r["question_id"] for r in records) == sorted(e["question_id"] for e in expected)
    assert {r["answer"] for r in records} <= set(data.answer_list())
    accuracy = sum(r["answer"] == e["answer"] for r, e in zip(
        sorted(records, key=lambda r: r["question_id"]), sorted(expected, key=lambda e: e["question_id"]),
        strict=True)) / len(expected)
    assert metrics["test/qa/accuracy"] == pytest.approx(accuracy)


def test_qa_head_starts_from_a_stage2_module_checkpoint(tmp_path) -> None:
    """A ``video_text`` module's tower initialises the QA head the official way (decoder = upper text layers)."""
    text = dataclasses.replace(tiny_text(), encoder_width=48)
    stage2 = UMTModule([partial(VideoTextHead, text=text, tokenizer=str(minilm_folder()), embed_dim=16)],
                       encoder=encoder_config())
    path = tmp_path / "stage2.ckpt"
    torch.save({"pytorch-lightning_version": L.__version__, "state_dict": stage2.state_dict()}, path)
    qa = UMTModule([partial(QAHead, text=tiny_text(), tokenizer=str(minilm_folder()))], encoder=encoder_config(),
                   checkpoint=str(path))
    tower = stage2.heads["video_text"].tower.text_encoder.bert
    decoder = qa.heads["qa"].qa.text_decoder.bert
    assert torch.equal(decoder.encoder.layer[0].crossattention.self.key.weight,
                       tower.encoder.layer[1].crossattention.self.key.weight)
    assert torch.equal(decoder.embeddings.word_embeddings.weight, tower.embeddings.word_embeddings.weight)
    assert torch.equal(qa.encoder.patch_embed.proj.weight, stage2.encoder.patch_embed.proj.weight)


def test_decoder_from_a_bert_folder_reports_the_tensors_left_fresh(caplog: pytest.LogCaptureFixture) -> None:
    """A plain BERT has no cross-attention: the decoder copies the upper layers' self-attention and feed-forward and
    names what it could not take (cross-attention keys / values read the 48-wide video in the encoder)."""
    folder = str(minilm_folder())
    with caplog.at_level("INFO", logger="umt"):
        module = UMTModule([partial(QAHead, text=vt_text_config(), bert=folder, tokenizer=folder)],
                           encoder=encoder_config())
    head = module.heads["qa"]
    fresh = head._decoder_from_encoder()
    decoder, encoder = head.qa.text_decoder.bert, head.qa.text_encoder.bert
    fusion = vt_text_config().fusion_layer
    for layer in range(vt_text_config().num_layers - fusion):
        assert f"bert.encoder.layer.{layer}.crossattention.self.key.weight" in fresh
        assert f"bert.encoder.layer.{layer}.attention.self.query.weight" not in fresh
        assert torch.equal(decoder.encoder.layer[layer].attention.self.query.weight,
                           encoder.encoder.layer[fusion + layer].attention.self.query.weight)
    assert "bert.embeddings.word_embeddings.weight" not in fresh
    assert "left fresh" in caplog.text and "layer.*.crossattention.self.key.weight" in caplog.text


def test_multiple_choice_head_starts_from_a_stage2_module_checkpoint(tmp_path) -> None:
    """The ``multiple_choice`` head takes the text tower and ``pool_norm`` of a stage-2 module's ``video_text`` head
    (another name), as it takes those of an official stage-2 file."""
    stage2 = UMTModule([partial(VideoTextHead, text=tiny_text(), tokenizer=str(minilm_folder()), embed_dim=16)],
                       encoder=encoder_config())
    path = tmp_path / "stage2.ckpt"
    torch.save({"pytorch-lightning_version": L.__version__, "state_dict": stage2.state_dict()}, path)
    mc = UMTModule([partial(MultipleChoiceHead, text=tiny_text(), tokenizer=str(minilm_folder()), embed_dim=16)],
                   encoder=encoder_config(), checkpoint=str(path))
    source, loaded = stage2.heads["video_text"].state_dict(), mc.heads["multiple_choice"].state_dict()
    assert source.keys() == loaded.keys()
    assert all(torch.equal(source[k], loaded[k]) for k in source)
