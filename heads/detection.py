"""AVA spatio-temporal action detection head of the official detector (SPEC.md §4): final LayerNorm on every
token -> mean over time -> ROI align + max pool on the person boxes -> linear; sigmoid BCE training, frame mAP
evaluation."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from umt.checkpoints import CheckpointParts, check_fit
from umt.detection.boxes import MAX_TRAIN_BOXES, TEST_EXTENSION, TRAIN_JITTER
from umt.detection.metric import AVAFrameMAP, official_box_coordinates
from umt.detection.model import (
    AVA_NUM_CLASSES,
    Proposals,
    RoIHead,
    detection_loss,
    detection_scores,
    select_proposals,
    time_mean,
)
from umt.heads.base import Batch, EncoderStep, EvalContext, Head, HeadContext, load_module_part

FROM_DETECTOR = ("norm.", "head.fc.")
"""Keys of an official AVA detector file (as ``umt.checkpoints.read_parts`` names them) that the head holds."""


class DetectionHead(Head):
    """The official AVA detector's head over an encoder on every token (no final norm in the encoder: the head
    holds it, so that a K710 classifier initialises the encoder and the norm starts fresh, as officially).

    Batches are those of ``umt.data.ava.collate_detection``: ``video [B, 3, T, H, W]`` (H, W multiples of the
    patch), ``boxes [N, 4]`` input pixels, ``batch_index [N]``, ``size [N, 2]`` (W, H before padding),
    ``labels [N, K]`` multi-hot (training), ``box_scores [N]``, ``video_size [N, 2]`` and ``index [N]``
    (evaluation). Training: at most ``max_boxes`` boxes per clip, jittered; loss: BCE over boxes x classes
    times the number of boxes. Evaluation: boxes extended by ``test_extension``; scores ``sigmoid x box
    score`` into ``AVAFrameMAP`` over the data module's val split (every process; ``mAP`` and ``AP/<id> <name>``).
    Use with ``encoder.pos_embed: online`` (frames are not square) and ``encoder.final_norm: false``.

    Args:
        context: what the module knows (width).
        num_classes: rows of the classifier (80 AVA actions; column ``k`` is action id ``k + 1``).
        patch_size: the encoder's patch side in pixels (ROI spatial scale ``1 / patch_size``; checked per batch).
        init_scale: factor on the initial linear weight and bias (official 0.001).
        norm_eps: epsilon of the final LayerNorm.
        test_extension: (x, y) growth of the test boxes, as fractions of their size.
        train_jitter: training box jitter (x out, x in, y out, y in), as fractions of their size.
        max_boxes: training boxes per clip at most.
        action_threshold: class scores below it are not evaluated (official 0).
    """

    def __init__(self, context: HeadContext, num_classes: int = AVA_NUM_CLASSES, patch_size: int = 16,
                 init_scale: float = 0.001, norm_eps: float = 1e-6,
                 test_extension: tuple[float, float] = TEST_EXTENSION,
                 train_jitter: tuple[float, float, float, float] = TRAIN_JITTER, max_boxes: int = MAX_TRAIN_BOXES,
                 action_threshold: float = 0.0) -> None:
        super().__init__(context)
        self.patch_size = patch_size
        self.test_extension, self.train_jitter = tuple(test_extension), tuple(train_jitter)
        self.max_boxes, self.action_threshold = max_boxes, action_threshold
        self.norm = nn.LayerNorm(context.embed_dim, eps=norm_eps)
        self.head = RoIHead(context.embed_dim, num_classes, patch_size, init_scale)
        self.collected: list[tuple[Tensor, Tensor, Tensor]] = []

    def features(self, step: EncoderStep, video: Tensor) -> Tensor:
        """Normalised tokens averaged over time ``[B, C, h, w]`` of an unmasked pass over ``video``."""
        frames, height, width = step.output.grid
        if step.tokens.shape[1] != frames * height * width:
            raise ValueError("the detection head needs every token (no teacher masking)")
        if (height * self.patch_size, width * self.patch_size) != tuple(video.shape[-2:]):
            raise ValueError(f"a {tuple(video.shape[-2:])} input gives a {height} x {width} token grid, not one of "
                             f"{self.patch_size}-pixel patches: set the head's patch_size to the encoder's")
        return time_mean(self.norm(step.tokens), step.output.grid)

    def forward(self, step: EncoderStep, batch: Batch) -> tuple[Tensor, Proposals]:
        """Logits ``[M, num_classes]`` of the pooled boxes and which boxes they are (``Proposals``)."""
        features = self.features(step, batch["video"])
        chosen = select_proposals(batch["boxes"], batch["batch_index"], batch["size"], self.training,
                                  self.test_extension, self.train_jitter, self.max_boxes, step.generator)
        return self.head(features, chosen.boxes, chosen.batch_index), chosen

    def losses(self, step: EncoderStep, batch: Batch) -> dict[str, Tensor]:
        logits, chosen = self(step, batch)
        return {"loss": detection_loss(logits, batch["labels"][chosen.keep])}

    def eval_epoch_start(self, stage: str) -> None:
        self.collected = []

    def eval_step(self, step: EncoderStep, batch: Batch, stage: str) -> dict[str, Tensor]:
        """Keep the batch's detections: sample index, normalised boxes (as the official CSV) and scores."""
        logits, _ = self(step, batch)
        boxes = official_box_coordinates(batch["boxes"], batch["size"], batch["video_size"])
        self.collected.append((batch["index"], boxes, detection_scores(logits.float(), batch["box_scores"])))
        return {}

    def eval_epoch_end(self, context: EvalContext) -> dict[str, Tensor | float]:
        """``mAP`` and ``AP/<id> <name>`` of the split's detections gathered over every process."""
        metric = self.frame_map(context.datamodule).to(context.device)
        for index, boxes, scores in self.collected:
            metric.update(index, boxes, scores)
        self.collected = []
        return dict(metric.compute())

    def frame_map(self, datamodule: Any) -> AVAFrameMAP:
        """The frame-mAP metric over the val split of an AVA data module (``groundtruth_csv``, ``labelmap``,
        ``val_exclusions``, ``val_set.keys``)."""
        needed = ("groundtruth_csv", "labelmap", "val_exclusions", "val_set")
        if datamodule is None or not all(hasattr(datamodule, name) for name in needed):
            raise ValueError(f"the detection head evaluates on an AVA data module (with {', '.join(needed)}), "
                             f"not {type(datamodule).__name__}")
        return AVAFrameMAP(datamodule.groundtruth_csv, datamodule.labelmap, datamodule.val_set.keys,
                           datamodule.val_exclusions, self.action_threshold)

    def predict(self, step: EncoderStep, batch: Batch) -> dict[str, Tensor]:
        """``scores [N, K]`` (sigmoid x box score) of every box with its ``batch_index [N]``."""
        logits, _ = self(step, batch)
        return {"scores": detection_scores(logits.float(), batch["box_scores"]), "batch_index": batch["batch_index"]}

    def load_state(self, parts: CheckpointParts) -> tuple[set[str], list[str]]:
        """An official AVA file's final norm and classifier (strict); a classifier or stage-1/2 file leaves the
        head fresh (its ``fc_norm`` and classifier unused, as the official AVA fine-tuning)."""
        module = load_module_part(self, parts, self.name)
        if module is not None:
            return module
        if parts.family != "ava":
            return set(), sorted(self.state_dict())
        state = {k: v for k, v in parts.rest.items() if k.startswith(FROM_DETECTOR)}
        check_fit(state, self.state_dict(), f"the {self.name} head", parts.family, prefix=f"heads.{self.name}.")
        self.load_state_dict(state, strict=True)
        return set(state), []
