"""A short synthetic stage-2 run, then QA and multiple-choice fine-tunings from its checkpoint (shared by the learning
tests; ``python tests/qa_learning.py OUT`` runs all three and prints the numbers).

The text tower is a small BERT over the MiniLM vocabulary trained from scratch in stage 2 (VTC + MLM): on top of
the pre-trained MiniLM a fresh MLM head's first gradients wipe out its sentence features and VTC never leaves
chance, and VTM on this set collapses to the constant 1/3 match prediction with either tower (both measured)."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from vt_helpers import encoder_config, minilm_folder, text_config

from umt.datamodules.qa import SyntheticMCDataModule, SyntheticQADataModule
from umt.datamodules.video_text import SyntheticVideoTextDataModule
from umt.heads.multiple_choice import MultipleChoiceHead
from umt.heads.qa import QAHead
from umt.heads.video_text import LossWeights, VideoTextHead
from umt.models.text import TextConfig
from umt.module import UMTModule
from umt.options import EncoderConfig, OptimizerConfig

DATA = {"num_frames": 4, "img_size": 32, "batch_size": 16, "num_workers": 0, "train_size": 120, "val_size": 30,
        "test_size": 30}
"""One synthetic set for all three runs: 120 training videos (480 questions), 30 held-out test videos."""
QA_EPOCHS, MC_EPOCHS = 60, 5
WIDTH = 96
"""Video and text width: the official stage-2 -> QA init copies the fusion layers' cross-attention (reading the
video) into the answer decoder (reading the question states), so the two widths agree."""


def encoder() -> EncoderConfig:
    """The 2-block video encoder, ``WIDTH`` wide."""
    return encoder_config(embed_dim=WIDTH, num_heads=3)


def text() -> TextConfig:
    """4 BERT layers (2 text, 2 fusion: a 2-layer answer decoder), ``WIDTH`` wide, MiniLM's vocabulary."""
    return text_config(hidden_size=WIDTH, num_layers=4, num_heads=4, intermediate_size=4 * WIDTH, fusion_layer=2)


def optimizer(lr: float) -> OptimizerConfig:
    """AdamW at ``lr`` with half an epoch of warm-up, cosine to ``lr / 10``."""
    return OptimizerConfig(lr=lr, min_lr=lr / 10, warmup_epochs=0.5, weight_decay=0.02, betas=(0.9, 0.999),
                           batch_scaled=False, floor_warmup=True)


def fit(model: UMTModule, data: L.LightningDataModule, epochs: int, root: Path) -> L.Trainer:
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=root,
                        limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    return trainer


def test_metrics(model: UMTModule, data: L.LightningDataModule) -> dict[str, float]:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.test(model, datamodule=data, verbose=False)
    return metrics


def stage2_run(root: Path, epochs: int = 30, lr: float = 1e-3) -> tuple[Path, dict[str, float]]:
    """VTC + MLM stage 2 on the synthetic captions of ``root / "data"``; returns the module checkpoint and the
    held-out retrieval metrics."""
    torch.manual_seed(0)
    head = partial(VideoTextHead, text=text(), tokenizer=str(minilm_folder()), embed_dim=32, k_test=4,
                   max_length=24, weights=LossWeights(vtc=1.0, vtm=0.0, mlm=1.0))
    model = UMTModule([head], encoder=encoder(), optimizer=optimizer(lr), seed=0)
    data = SyntheticVideoTextDataModule(root / "data", **DATA)
    trainer = fit(model, data, epochs, root / "stage2")
    checkpoint = root / "stage2.ckpt"
    trainer.save_checkpoint(checkpoint)
    return checkpoint, test_metrics(model, data)


def baselines(root: Path, split: str) -> tuple[float, float]:
    """Accuracy of always giving the split's most frequent answer, and of the most frequent answer per question
    (the best the question text alone allows)."""
    items = json.loads((root / f"{split}_qa.json").read_text())
    overall = Counter(i["answer"] for i in items).most_common(1)[0][1] / len(items)
    by_question: dict[str, Counter] = {}
    for item in items:
        by_question.setdefault(item["question"], Counter())[item["answer"]] += 1
    per_question = sum(c.most_common(1)[0][1] for c in by_question.values()) / len(items)
    return overall, per_question


def qa_run(root: Path, checkpoint: Path, epochs: int, lr: float = 1e-3) -> dict[str, float]:
    """QA fine-tuning from the stage-2 ``checkpoint`` (the official init) on ``root / "data"``; held-out accuracy
    before and after, and the two answer baselines."""
    torch.manual_seed(0)
    head = partial(QAHead, text=text(), tokenizer=str(minilm_folder()), k=4)
    data = SyntheticQADataModule(root / "data", **DATA)
    model = UMTModule([head], encoder=encoder(), optimizer=optimizer(lr), checkpoint=str(checkpoint), seed=0)
    before = test_metrics(model, data)["test/qa/accuracy"]
    fit(model, data, epochs, root / "qa")
    after = test_metrics(model, data)["test/qa/accuracy"]
    majority, per_question = baselines(root / "data", "test")
    return {"stage2": before, "trained": after, "majority": majority, "per_question_majority": per_question}


def mc_run(root: Path, checkpoint: Path | None, epochs: int, lr: float = 1e-3) -> dict[str, float]:
    """Multiple-choice fine-tuning (VTC + VTM on the training captions) from ``checkpoint`` (None: from random
    init); held-out option accuracy before and after."""
    torch.manual_seed(0)
    head = partial(MultipleChoiceHead, text=text(), tokenizer=str(minilm_folder()), embed_dim=32, max_length=24)
    data = SyntheticMCDataModule(root / "data", evaluate="test", **DATA)
    model = UMTModule([head], encoder=encoder(), optimizer=optimizer(lr),
                      checkpoint=None if checkpoint is None else str(checkpoint), seed=0)
    before = test_metrics(model, data)["test/multiple_choice/accuracy"]
    fit(model, data, epochs, root / "mc")
    return {"before": before, "trained": test_metrics(model, data)["test/multiple_choice/accuracy"]}


def main(out: Path) -> dict[str, Any]:
    import time

    start = time.time()
    checkpoint, retrieval = stage2_run(out)
    results: dict[str, Any] = {"stage2_itc_r_mean": retrieval["test/video_text/itc_r_mean"],
                               "stage2_s": round(time.time() - start)}
    results["qa"] = qa_run(out, checkpoint, epochs=QA_EPOCHS)
    results["mc"] = mc_run(out, checkpoint, epochs=MC_EPOCHS)
    results["mc_from_scratch"] = mc_run(out, None, epochs=MC_EPOCHS)
    results["total_s"] = round(time.time() - start)
    return results


if __name__ == "__main__":
    import sys

    print(main(Path(sys.argv[1])))
