"""Answer a question about one video with an official (or this library's) video-QA file: the top answers of a list."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from umt.checkpoints import CheckpointError
from umt.data.decoding import probe, read_frames
from umt.data.qa import MAX_ANSWER_LENGTH, MAX_QUESTION_LENGTH, read_answer_list, tokenize_answers
from umt.data.samplers import interval_indices
from umt.data.text import load_tokenizer, tokenize
from umt.data.transforms import stage2_eval_transform
from umt.models.qa import QA_CONFIGS, VideoQAModel
from umt.qa_checkpoints import load_qa_weights, read_qa_checkpoint

SIZES = {768: "umt_b16", 1024: "umt_l16"}
"""QA model size by video width (UMT-B/16 with BERT-base, UMT-L/16 with BERT-large)."""


@dataclass
class Answers:
    """The best answers to one question: ``answers`` most probable first with their ``probabilities``."""

    answers: list[str]
    probabilities: list[float]


def question_clip(path: str | Path, num_frames: int = 12, size: int = 224) -> Tensor:
    """The evaluation view of a video for QA: ``num_frames`` "middle" frames, resized to ``size``, normalised,
    ``[3, num_frames, size, size]``.

    Raises:
        VideoError: the video cannot be read.
    """
    indices = interval_indices(probe(path).num_frames, num_frames, "middle")
    return stage2_eval_transform(size)(read_frames(path, indices))


def load_qa_file(checkpoint: str | Path, num_frames: int = 12, trust_pickle: bool = False) -> VideoQAModel:
    """A ``VideoQAModel`` of the file's size (B/16 or L/16) holding its tensors.

    Raises:
        CheckpointError: not a QA fine-tuned file (stage-2, retrieval, classifier) or an unknown size.
    """
    loaded = read_qa_checkpoint(checkpoint, trust_pickle)
    if loaded.family != "mm_qa":
        raise CheckpointError(f"{checkpoint} is a stage-2 pre-training file, not fine-tuned for QA: its answer "
                              "decoder was never trained; give a QA fine-tuned file (e.g. qa_msrvtt_b16_25m.pth)")
    width = loaded.state_dict["vision_encoder.encoder.patch_embed.proj.weight"].shape[0]
    if width not in SIZES:
        raise CheckpointError(f"{checkpoint}: video width {width} is neither UMT-B/16 (768) nor UMT-L/16 (1024)")
    model = VideoQAModel(QA_CONFIGS[SIZES[width]].replace_vision(num_frames=num_frames))
    load_qa_weights(model, loaded)
    return model.eval()


@torch.inference_mode()
def ask_video(model: VideoQAModel, clip: Tensor, question: str, answer_list: list[str],
              tokenizer: PreTrainedTokenizerBase, top_k: int = 5) -> Answers:
    """Rank ``answer_list`` for ``question`` about ``clip`` (``[3, T, H, W]``) as the official evaluation (the k
    answers with the most probable first token, re-scored by their likelihood); the ``top_k`` best."""
    question_ids, question_mask = tokenize(tokenizer, [question], MAX_QUESTION_LENGTH)
    answer_ids, answer_mask = tokenize_answers(tokenizer, answer_list, MAX_ANSWER_LENGTH)
    model.cls_token_id = tokenizer.cls_token_id
    tokens = model.encode_video(clip[None])
    states = model.encode_question(question_ids, question_mask, tokens)
    top_ids, probs, _ = model.rank_answers(states, question_mask, answer_ids, answer_mask)
    count = min(top_k, top_ids.shape[1])
    return Answers([answer_list[int(i)] for i in top_ids[0, :count]], [float(p) for p in probs[0, :count]])


def answer_question(video: Path, question: str, checkpoint: Path | None, answers: Path | None, tokenizer: str,
                    top_k: int = 5, num_frames: int = 12, trust_pickle: bool = False) -> Answers:
    """What ``umt ask`` prints (see ``umt.cli.ask`` for the arguments), with a clear error for what is missing.

    Raises:
        ValueError: no checkpoint, no or a missing answer list, no tokenizer. CheckpointError: not a QA file.
    """
    if checkpoint is None:
        raise ValueError("umt ask needs --checkpoint QA_FILE (an official qa_*_25m.pth video-QA file)")
    if answers is None:
        raise ValueError("umt ask needs --answers ANSWER_LIST.json (the dataset's answer list, e.g. "
                         "msrvtt_qa_answer_list.json): QA models rank a closed list of answers")
    if not Path(answers).is_file():
        raise ValueError(f"answer list {answers} not found (--answers ANSWER_LIST.json)")
    answer_list = read_answer_list(answers)
    try:
        bert_tokenizer = load_tokenizer(tokenizer)
    except FileNotFoundError as error:
        raise ValueError(f"{error}; give a BERT-uncased tokenizer folder with --tokenizer DIR") from error
    model = load_qa_file(checkpoint, num_frames, trust_pickle)
    clip = question_clip(video, num_frames, model.config.vision.img_size)
    return ask_video(model, clip, question, answer_list, bert_tokenizer, top_k)
