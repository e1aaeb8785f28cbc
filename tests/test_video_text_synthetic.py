"""Stage 2 end to end on synthetic captioned videos with ``UMTModule`` and its ``video_text`` head: pre-train,
zero-shot retrieval, fine-tune from the module's checkpoint, ``umt search`` on that checkpoint."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image
from vt_helpers import TEXT, CaptionedDataModule, synthetic_captions, tiny_module

from umt.cli import main
from umt.module import UMTModule

CHANCE_R_MEAN = {n: sum(min(k / n, 1.0) * 100 for k in (1, 5, 10)) / 3 for n in (24,)}
"""Expected ``r_mean`` of a random ranking of n media (one ground truth each): 22.2 for 24."""


def fit(module: UMTModule, data: CaptionedDataModule, steps: int, root: Path) -> Path:
    """Train ``steps`` optimizer steps without validation; returns the saved checkpoint."""
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=root, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    (checkpoint,) = (root / "checkpoints").glob("*.ckpt")
    return checkpoint


def retrieval(module: UMTModule, data: CaptionedDataModule) -> dict[str, float]:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.test(module, datamodule=data, verbose=False)
    return metrics


def distinct_videos(root: Path, split: str, count: int) -> list[dict[str, str]]:
    """The first ``count`` videos of a split whose captions name pairwise different colours and backgrounds."""
    chosen: list[dict[str, str]] = []
    for item in json.loads((root / f"{split}_captions.json").read_text()):
        colour, background = item["caption"].split()[1], item["caption"].split(" noisy ")[1]
        if all(colour != c["caption"].split()[1] and background != c["caption"].split(" noisy ")[1] for c in chosen):
            chosen.append(item)
        if len(chosen) == count:
            return chosen
    raise AssertionError(f"fewer than {count} distinct videos in {split}")


def search(query: str, folder: Path, checkpoint: Path, cache: Path, capsys: pytest.CaptureFixture[str],
           *options: str) -> tuple[str, list[str], str]:
    """Run ``umt search``; returns its header line, the ranked file names and what it wrote to stderr."""
    main(["search", query, "--videos", str(folder), "--checkpoint", str(checkpoint), "--cache", str(cache), *options])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    ranked = [match.group(1) for line in lines[1:] if (match := re.match(r"\s+\d+\. (\S+)", line))]
    return lines[0], [Path(path).name for path in ranked], captured.err


def check_search(root: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``umt search`` puts the captioned video first among a few, reuses its cache, and re-ranks on request."""
    targets = distinct_videos(root, "val", 3)
    folder, cache = tmp_path / "search", tmp_path / "cache"
    folder.mkdir()
    for item in targets:
        shutil.copy2(root / item["video"], folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UMT_PROGRESS", "1")  # the indexing bar, drawn on a terminal only otherwise
        header, _, err = search("anything", folder, checkpoint, cache, capsys)
    assert "(3 encoded, 0 from the cache)" in header
    bar = r"indexing: 100%\|[^|]*\| 3/3 \[\d+:\d\d<\d+:\d\d, *[\d.]+(s/video|video/s)\]"
    assert re.search(bar, err.replace("\r", "\n"))
    hits = 0
    for item in targets:
        header, ranked, _ = search(item["caption"], folder, checkpoint, cache, capsys, "--top", "3")
        assert "(0 encoded, 3 from the cache)" in header and len(ranked) == 3
        hits += ranked[0] == Path(item["video"]).name
    assert hits >= 2, f"{hits} of 3 captions found their video first"
    (folder / Path(targets[0]["video"]).name).touch()  # a changed file is encoded again
    grid = tmp_path / "grids" / "grid.png"
    header, ranked, _ = search(targets[0]["caption"], folder, checkpoint, cache, capsys, "--rerank", "--save_grid",
                               str(grid))
    assert "(1 encoded, 2 from the cache)" in header and len(ranked) == 3
    assert Image.open(grid).height > 3 * 96  # a contact sheet row (thumbnails 96 px high) per result


def run_protocol(tmp_path: Path, capsys: pytest.CaptureFixture[str], losses: dict[str, float], text: dict,
                 steps: tuple[int, int]) -> tuple[dict[str, float], dict[str, float], Path, Path]:
    """Stage-2 run on the train split, zero-shot retrieval on val, fine-tuning on the test split (as the target
    dataset's training set), retrieval on val again; returns both metric sets, the fine-tuned checkpoint and the
    data folder."""
    root = synthetic_captions(tmp_path / "data", train_size=48, val_size=24, test_size=48)
    options = {"teacher": False, "losses": losses, "text": text, "max_length": 24, "lr": 2e-3,
               "text_lr": 2e-4, "min_lr_ratio": 1.0}  # constant lr: few steps
    torch.manual_seed(0)
    pretrain = tiny_module(**options)
    pretrained = fit(pretrain, CaptionedDataModule(root, "train", "val"), steps[0], tmp_path / "pretrain")
    zero_shot = retrieval(pretrain, CaptionedDataModule(root, "train", "val"))
    finetune = tiny_module(**(options | {"bert": False, "checkpoint": str(pretrained), "losses": None}))
    tuned = fit(finetune, CaptionedDataModule(root, "test", "val"), steps[1], tmp_path / "finetune")
    finetuned = retrieval(finetune, CaptionedDataModule(root, "test", "val"))
    with capsys.disabled():
        for name, metrics in (("zero-shot", zero_shot), ("fine-tuned", finetuned)):
            shown = {k: v for k, v in sorted(metrics.items()) if "r_mean" in k or "r1" in k}
            print(f"\n{name}:", " ".join(f"{k}={v:.1f}" for k, v in shown.items()))
    return zero_shot, finetuned, tuned, root


def test_stage2_run_retrieves_zero_shot_and_fine_tuning_helps(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Contrastive stage-2 run (two text-only MiniLM layers), then VTC + VTM fine-tuning (the default without a
    teacher), so the re-ranked recalls need a trained matching head."""
    text = TEXT | {"fusion_layer": 2}
    zero_shot, finetuned, tuned, root = run_protocol(tmp_path, capsys, {"vtc": 1.0, "vtm": 0.0}, text, (60, 20))
    assert zero_shot["test/video_text/itc_r_mean"] > 1.5 * CHANCE_R_MEAN[24], zero_shot
    assert finetuned["test/video_text/itc_r_mean"] > zero_shot["test/video_text/itc_r_mean"], (zero_shot, finetuned)
    assert finetuned["test/video_text/r_mean"] > 1.5 * CHANCE_R_MEAN[24], finetuned
    check_search(root, tuned, tmp_path, capsys)  # the fine-tuned UMTModule checkpoint serves umt search
