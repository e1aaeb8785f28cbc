"""AVA v2.2 DataModules: the official release layout, and the synthetic AVA-format set."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from umt.data.ava import DETECTION_SCORE, AVADataset, collate_detection, read_annotations, read_detections
from umt.data.synthetic_ava import DETECTIONS, LABELMAP, SyntheticAVAConfig, generate_ava

logger = logging.getLogger("umt")

NO_TEST_SPLIT = ("AVA v2.2 has no test split with public labels: umt test evaluates the val split (person "
                 "detections, frame mAP) as umt validate does; its metrics are logged as test/...")


class AVADataModule(L.LightningDataModule):
    """AVA v2.2: training on the ground-truth boxes of ``ava_train_v2.2.csv``, validation on the person
    detections (score >= ``min_score``) of the val keyframes, one sample per keyframe.

    Layout under ``root``: ``videos/<id>.mkv|mp4|webm`` (or with ``cut_clips`` AlphAction's
    ``clips/trainval/<id>/<t>.mp4``), ``ava_{train,val}_v2.2.csv``, ``ava_{train,val}_excluded_timestamps_v2.2.csv``,
    the label map, and the detections (``ava_val_predicted_boxes.csv``, or AlphAction's
    ``boxes/ava_val_det_person_bbox.json`` with ``annotations/ava_val_v2.2_min.json`` as ``images``).

    Batches: see ``umt.data.ava.collate_detection``. ``short_side`` / ``crop``: transform sizes (official 256 / 224).
    AVA has no labelled test split: ``test_dataloader`` is the val split, with a note (``NO_TEST_SPLIT``).
    """

    def __init__(self, root: str | Path, batch_size: int = 8, val_batch_size: int = 1, num_workers: int = 4,
                 cut_clips: bool = False, detections: str = "ava_val_predicted_boxes.csv",
                 images: str | None = None, labelmap: str = LABELMAP, min_score: float = DETECTION_SCORE,
                 short_side: int = 256, crop: int = 224) -> None:
        super().__init__()
        self.root = Path(root)
        self.batch_size, self.val_batch_size, self.num_workers = batch_size, val_batch_size, num_workers
        self.cut_clips, self.detections, self.images, self.min_score = cut_clips, detections, images, min_score
        self.labelmap_file = labelmap
        self.sizes = {"short_side": short_side, "crop": crop}
        self.train_set: AVADataset | None = None
        self.val_set: AVADataset | None = None

    @property
    def movies(self) -> Path:
        return self.root / ("clips/trainval" if self.cut_clips else "videos")

    @property
    def groundtruth_csv(self) -> Path:
        """The val ground truth, for ``umt.detection.AVAFrameMAP``."""
        return self.root / "ava_val_v2.2.csv"

    @property
    def labelmap(self) -> Path:
        return self.root / self.labelmap_file

    @property
    def val_exclusions(self) -> Path:
        return self.root / "ava_val_excluded_timestamps_v2.2.csv"

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.train_set = AVADataset(read_annotations(self.root / "ava_train_v2.2.csv"), self.movies, True,
                                        self.cut_clips, self.root / "ava_train_excluded_timestamps_v2.2.csv",
                                        **self.sizes)
        images = None if self.images is None else self.root / self.images
        self.val_set = AVADataset(read_detections(self.root / self.detections, self.min_score, images), self.movies,
                                  False, self.cut_clips, self.val_exclusions, **self.sizes)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, self.batch_size, shuffle=True, num_workers=self.num_workers,
                          collate_fn=collate_detection, drop_last=True, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.val_batch_size, num_workers=self.num_workers,
                          collate_fn=collate_detection)

    def test_dataloader(self) -> DataLoader:
        """The val split (AVA has no labelled test split), after a note saying so."""
        rank_zero_only(logger.warning)(NO_TEST_SPLIT)
        return self.val_dataloader()


class SyntheticAVADataModule(AVADataModule):
    """``AVADataModule`` on the synthetic AVA-format set (``umt.data.synthetic_ava``), generated into ``root``
    on first use."""

    def __init__(self, root: str | Path, config: SyntheticAVAConfig | None = None, batch_size: int = 8,
                 val_batch_size: int = 1, num_workers: int = 4, short_side: int = 256, crop: int = 224) -> None:
        super().__init__(root, batch_size, val_batch_size, num_workers, detections=DETECTIONS, short_side=short_side,
                         crop=crop)
        self.config = config or SyntheticAVAConfig()

    def prepare_data(self) -> None:
        generate_ava(self.root, self.config)
