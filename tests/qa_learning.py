"""Short QA and multiple-choice fine-tuning runs on the synthetic set (shared by the learning tests)."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path

import lightning as L
from vt_helpers import encoder_config, minilm_folder, text_config

from umt.datamodules.qa import SyntheticMCDataModule, SyntheticQADataModule
from umt.heads.multiple_choice import MultipleChoiceHead
from umt.heads.qa import QAHead
from umt.module import UMTModule
from umt.options import OptimizerConfig

DATA = {"num_frames": 4, "img_size": 32, "batch_size": 16, "num_workers": 0, "train_size": 120, "val_size": 30,
        "test_size": 30}


def baselines(root: Path, split: str) -> tuple[float, float]:
    """Accuracy of always giving the split's most frequent answer, and of the most frequent answer per question
    (what the question text alone allows)."""
    items = json.loads((root / f"{split}_qa.json").read_text())
    overall = Counter(i["answer"] for i in items).most_common(1)[0][1] / len(items)
    by_question: dict[str, Counter] = {}
    for item in items:
        by_question.setdefault(item["question"], Counter())[item["answer"]] += 1
    per_question = sum(c.most_common(1)[0][1] for c in by_question.values()) / len(items)
    return overall, per_question


def module(head, lr: float, seed: int = 0) -> UMTModule:
    optimizer = OptimizerConfig(lr=lr, min_lr=lr / 10, warmup_epochs=0, weight_decay=0.02, betas=(0.9, 0.999),
                                batch_scaled=False, floor_warmup=True)
    return UMTModule([head], encoder=encoder_config(), optimizer=optimizer, seed=seed)


def qa_head(**options):
    folder = str(minilm_folder())
    return partial(QAHead, text=text_config(), bert=folder, tokenizer=folder, k=4, **options)


def mc_head():
    folder = str(minilm_folder())
    return partial(MultipleChoiceHead, text=text_config(), bert=folder, tokenizer=folder, embed_dim=32)


def test_accuracy(model: UMTModule, data: L.LightningDataModule, key: str) -> float:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.test(model, datamodule=data, verbose=False)
    return float(metrics[key])


def fit(model: UMTModule, data: L.LightningDataModule, epochs: int, root: Path) -> None:
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=root,
                        limit_val_batches=0)
    trainer.fit(model, datamodule=data)


def qa_run(root: Path, epochs: int, lr: float = 1e-3) -> dict[str, float]:
    L.seed_everything(0)
    data = SyntheticQADataModule(root, **DATA)
    model = module(qa_head(), lr)
    untrained = test_accuracy(model, data, "test/qa/accuracy")
    fit(model, data, epochs, root)
    trained = test_accuracy(model, data, "test/qa/accuracy")
    overall, per_question = baselines(root, "test")
    return {"untrained": untrained, "trained": trained, "majority": overall, "per_question_majority": per_question}


def mc_run(root: Path, epochs: int, lr: float = 1e-3) -> dict[str, float]:
    L.seed_everything(0)
    data = SyntheticMCDataModule(root, evaluate="test", **DATA)
    model = module(mc_head(), lr)
    untrained = test_accuracy(model, data, "test/multiple_choice/accuracy")
    fit(model, data, epochs, root)
    return {"untrained": untrained, "trained": test_accuracy(model, data, "test/multiple_choice/accuracy")}


if __name__ == "__main__":
    import sys
    import time

    start = time.time()
    kind, epochs = sys.argv[1], int(sys.argv[2])
    out = Path(sys.argv[3])
    result = (qa_run if kind == "qa" else mc_run)(out, epochs)
    print(kind, epochs, result, f"{time.time() - start:.0f}s")
