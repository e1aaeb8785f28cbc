"""Captions for the video-text models: the official text cleaning, tokenizer loading and tokenisation."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor
from transformers import AutoTokenizer, PreTrainedTokenizerBase

_DELETED = re.compile(r"[,.'!?\"()*#:;~]")
_RUNS_OF_SPACE = re.compile(r"\s{2,}")


def clean_text(text: str, max_words: int | None = None) -> str:
    """The official caption cleaning (``pre_text``): lower-case; delete ``,.'!?"()*#:;~``; ``-`` and ``/``
    become spaces; ``<person>`` becomes ``person``; every run of two or more whitespace characters becomes
    one space; trailing newlines and surrounding spaces go; then at most ``max_words`` space-separated words."""
    text = _DELETED.sub("", text.lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = _RUNS_OF_SPACE.sub(" ", text).rstrip("\n").strip(" ")
    if max_words:
        text = " ".join(text.split(" ")[:max_words])
    return text


def load_tokenizer(name_or_path: str | Path = "bert-base-uncased") -> PreTrainedTokenizerBase:
    """A BERT tokenizer from a local folder (``tokenizer.json`` or ``vocab.txt``) or a Hugging Face name
    (``bert-base-uncased`` for UMT-B, ``bert-large-uncased`` for UMT-L), from the cache when offline.

    Raises:
        FileNotFoundError: the folder does not exist, or the name is neither local nor obtainable.
    """
    looks_local = isinstance(name_or_path, Path) or str(name_or_path).startswith((".", "/", "~"))
    if looks_local and not Path(name_or_path).expanduser().is_dir():
        raise FileNotFoundError(f"tokenizer folder {name_or_path} does not exist")
    try:
        return AutoTokenizer.from_pretrained(str(Path(name_or_path).expanduser()) if looks_local else name_or_path)
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"no tokenizer at {name_or_path!r}: not a folder with tokenizer.json / vocab.txt, and not in the "
            "Hugging Face cache (offline runs: download it once, or pass a local folder)"
        ) from error


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int = 32,
             clean: bool = True) -> tuple[Tensor, Tensor]:
    """Clean (unless ``clean=False``) and tokenise captions as the official pipelines do: [CLS] ... [SEP],
    truncated and padded to ``max_length``.

    Returns:
        ``input_ids [B, max_length]`` and ``attention_mask [B, max_length]`` (1 = token, 0 = padding).
    """
    texts = [clean_text(t) if clean else t for t in texts]
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]
