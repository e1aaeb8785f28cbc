"""DataModules as a Lightning user meets them: registered, built from a video list, batches of the right shape."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.trainer.connectors.data_connector import _DataConnector
from torch.utils.data import DistributedSampler

from umt.data.callbacks import ReplacedVideoCounter
from umt.data.dataset import ResumableRandomSampler
from umt.datamodules.video_list import (
    Kinetics400DataModule,
    SomethingSomethingV2DataModule,
    SyntheticDataModule,
    VideoListDataModule,
)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    module = SyntheticDataModule(tmp_path_factory.mktemp("synthetic"), train_size=8, val_size=4, test_size=4,
                                 num_classes=4)
    module.prepare_data()
    return module.root


def test_registered_in_entry_points() -> None:
    names = {ep.name: ep.load() for ep in entry_points(group="umt.datamodules")}
    assert names["kinetics400"] is Kinetics400DataModule and names["ssv2"] is SomethingSomethingV2DataModule
    assert {"video_list", "kinetics600", "kinetics700", "kinetics710", "mit", "synthetic"} <= set(names)


def test_official_defaults() -> None:
    ssv2 = SomethingSomethingV2DataModule("/data/ssv2")
    assert (ssv2.num_classes, ssv2.hparams.protocol, ssv2.hparams.flip, ssv2.hparams.test_num_clips) == (
        174, "ssv2", False, 2)
    k400 = Kinetics400DataModule("/data/k400", batch_size=4)
    assert (k400.num_classes, k400.hparams.num_sample, k400.hparams.batch_size) == (400, 2, 4)


def test_batches_of_each_split(synthetic_root: Path) -> None:
    module = VideoListDataModule(synthetic_root, num_classes=4, num_frames=4, img_size=32, batch_size=2,
                                 num_workers=0, num_sample=2, test_num_clips=2, test_num_crops=3)
    module.prepare_data()
    module.setup("fit")
    train = next(iter(module.train_dataloader()))
    assert train["video"].shape == (4, 3, 4, 32, 32) and train["video"].dtype == torch.float32
    assert train["label"].shape == (4,) and not train["replaced"].any()
    val = next(iter(module.val_dataloader()))
    assert val["video"].shape == (2, 3, 4, 32, 32)
    module.setup("test")
    assert len(module.datasets["test"]) == 4 * 6
    test = next(iter(module.test_dataloader()))
    assert test["index"].tolist() == [0, 0] and test["view"].tolist() == [0, 1]


def test_missing_list_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train\.csv: video list not found"):
        VideoListDataModule(tmp_path).prepare_data()


class MeanColourClassifier(L.LightningModule):
    """The smallest trainable model over a video batch: a linear layer on the mean colour."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, num_classes)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.fc(batch["video"].mean(dim=(2, 3, 4)))
        return torch.nn.functional.cross_entropy(logits, batch["label"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_unreadable_videos_do_not_stop_training_and_are_counted(synthetic_root: Path, tmp_path: Path) -> None:
    listed = (synthetic_root / "train.csv").read_text().splitlines()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    lines = [f"{synthetic_root / line}" for line in listed] + [f"{tmp_path / 'missing.mp4'},1", f"{broken},0"]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    module = VideoListDataModule(tmp_path, val_list=None, test_list=None, num_classes=4, num_frames=2, img_size=32,
                                 batch_size=2, num_workers=0, auto_augment=None, random_erasing=0.0)
    trainer = L.Trainer(max_epochs=1, callbacks=[ReplacedVideoCounter()], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(MeanColourClassifier(4), datamodule=module)
    assert trainer.callback_metrics["data/train_replaced_videos"].item() == 2


def test_paths_are_saved_as_strings() -> None:
    """Checkpoints are loaded weights-only, which refuses ``Path`` objects in hyper-parameters."""
    module = Kinetics400DataModule(Path("/data/k400"), prefix=Path("/videos"))
    assert (module.hparams.root, module.hparams.prefix) == ("/data/k400", "/videos")


def test_training_loader_is_this_ranks_shard_and_lightning_keeps_it(synthetic_root: Path) -> None:
    """Under a trainer of rank r of 2, the training sampler takes every second item of the epoch's order from
    position r, and Lightning (which wraps any other sampler of a distributed run) leaves it unwrapped."""
    shards = []
    for rank in range(2):
        module = SyntheticDataModule(synthetic_root, train_size=8, val_size=4, test_size=4, num_classes=4,
                                     num_workers=0, batch_size=2, seed=3)
        module.setup("fit")
        module.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        loader = module.train_dataloader()
        assert isinstance(loader.sampler, DistributedSampler) and len(loader) == 2
        shards.append([item for item, _ in loader.sampler])
    whole = [item for item, _ in ResumableRandomSampler(8, seed=3)]
    assert shards == [whole[0::2], whole[1::2]]
    connector = _DataConnector.__new__(_DataConnector)
    connector.trainer = SimpleNamespace(_accelerator_connector=SimpleNamespace(use_distributed_sampler=True,
                                                                               is_distributed=True))
    assert not connector._requires_distributed_sampler(loader)
