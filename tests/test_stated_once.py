"""Frames and size are stated once, by the data module: linked into the encoder, saved as resolved, contradicted by
the encoder in one line, and still checked against a checkpoint's position table."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

import umt.lightning  # noqa: F401  (imported before any capture: Lightning's log handler keeps the real stderr)
from conftest import write_official_classifier
from umt.checkpoints import CheckpointError
from umt.cli import main
from umt.errors import UsageError
from umt.heads.base import DataInfo
from umt.heads.classification import ClassificationHead
from umt.module import UMTModule
from umt.options import EncoderConfig

RECIPE = Path(__file__).parents[1] / "recipes" / "demo" / "classification_tiny.yaml"
SIZES = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def module(encoder: EncoderConfig, data: DataInfo, checkpoint: Path | None = None) -> UMTModule:
    return UMTModule(
        [partial(ClassificationHead)],
        encoder=encoder,
        data_info=data,
        checkpoint=None if checkpoint is None else str(checkpoint),
    )


def test_the_data_gives_the_encoder_its_input() -> None:
    built = module(EncoderConfig(**SIZES), DataInfo(num_classes=3, num_frames=4, img_size=32))
    assert (built.encoder.config.num_frames, built.encoder.config.img_size) == (4, 32)
    assert (built.hparams["encoder"].num_frames, built.hparams["encoder"].img_size) == (4, 32)  # saved resolved
    assert built(torch.zeros(1, 3, 4, 32, 32)).output.tokens.shape[0] == 1
    alone = module(EncoderConfig(**SIZES), DataInfo(num_classes=3))
    assert (alone.encoder.config.num_frames, alone.encoder.config.img_size) == (8, 224)


def test_an_encoder_contradicting_the_data_is_refused() -> None:
    with pytest.raises(UsageError, match=r"model\.encoder\.num_frames is 8 but the data module gives 4: state it once"):
        module(EncoderConfig(**SIZES, num_frames=8), DataInfo(num_classes=3, num_frames=4, img_size=32))
    same = module(EncoderConfig(**SIZES, num_frames=4), DataInfo(num_classes=3, num_frames=4, img_size=32))
    assert same.encoder.config.num_frames == 4


def test_the_command_names_the_contradiction(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(
            [
                "test",
                "--config",
                str(RECIPE),
                "--data.root",
                str(tmp_path),
                "--model.encoder.num_frames",
                "8",
                "--trainer.default_root_dir",
                str(tmp_path),
            ]
        )
    assert stopped.value.code == 2
    assert "model.encoder.num_frames is 8 but the data module gives 4" in capsys.readouterr().err


def test_a_checkpoint_of_other_frames_is_still_refused(tmp_path: Path) -> None:
    """An official classifier carrying its 8-frame position table (policy ``checkpoint``) fits 8 frames only."""
    official = write_official_classifier(tmp_path / "f8.pth", num_frames=8, img_size=32, num_classes=3)
    state = torch.load(official, weights_only=True)
    state["model"]["pos_embed"] = torch.zeros(1, 8 * 2 * 2, 32)  # 8 frames x a 2 x 2 grid of 16 px patches
    torch.save(state, official)
    loaded = module(EncoderConfig(**SIZES), DataInfo(num_classes=3, num_frames=8, img_size=32), official)
    assert (loaded.encoder.config.num_frames, loaded.encoder.config.pos_embed) == (8, "checkpoint")
    with pytest.raises(CheckpointError, match="pos_embed"):
        module(EncoderConfig(**SIZES), DataInfo(num_classes=3, num_frames=4, img_size=32), official)
