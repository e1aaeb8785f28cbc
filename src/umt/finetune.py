"""ClassificationModule: fine-tune and evaluate a UMT video classifier (SPEC.md §2) in Lightning."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from umt.checkpoints import HeadMode, read_checkpoint
from umt.data.transforms import VideoMixup
from umt.models.classifier import VideoClassifier
from umt.models.config import get_config
from umt.models.factory import create_model
from umt.optim import layer_decay_groups, warmup_cosine
from umt.rng import ResumesRandomStates
from umt.views import merge_views, write_predictions

NO_WEIGHT_DECAY = ("pos_embed", "cls_token")
"""Names the official models exclude from weight decay (``no_weight_decay()``), besides 1-D parameters."""


def build_classifier(model: str, checkpoint: str | Path | None = None, head_mode: HeadMode = "load",
                     head_label_map: str | Path | None = None, trust_pickle: bool = False,
                     **options: Any) -> VideoClassifier:
    """``create_model`` with the fine-tuning head policy: a checkpoint head with ``num_classes`` rows is loaded;
    one with other rows takes its rows from ``head_label_map`` (a JSON list of row indices, the official
    ``label_mixto{600,700}.json``) if given, else is adapted by ``head_mode`` (``reset``, ``k710_to_k400``;
    ``load`` then fails with the sizes)."""
    if checkpoint is None:
        return create_model(model, **options)
    loaded = read_checkpoint(checkpoint, trust_pickle)
    classes = get_config(model, **{**loaded.config, **options}).num_classes
    if loaded.num_classes is None or loaded.num_classes == classes:
        return create_model(model, loaded, **options)
    if head_label_map is not None:
        rows = torch.tensor(json.loads(Path(head_label_map).read_text()), dtype=torch.long)
        state = {k: v[rows] if k.startswith("head.fc.") else v for k, v in loaded.state_dict.items()}
        return create_model(model, dataclasses.replace(loaded, state_dict=state), **options)
    return create_model(model, loaded, head_mode=head_mode, **options)


class ClassificationModule(ResumesRandomStates, L.LightningModule):
    """Fine-tuning and evaluation of a ``VideoClassifier`` with the official recipe (SPEC §2.3-2.6).

    Training: mixup / cutmix with label smoothing on the batch (repeated-augmentation clips included),
    soft-target cross-entropy, AdamW with layer-wise lr decay and no weight decay on 1-D parameters, per-step
    linear warm-up from ``warmup_lr`` then cosine to ``min_lr``. Validation: one view per video. Test: every
    view predicted, softmaxes averaged per video over all processes (duplicates from padded distributed
    samplers counted once), top-1 / top-5 / mean class accuracy per video; optionally written per video.

    Args:
        model: size (``umt_b16``, ``umt_l16``); ``model_options`` override its config (``num_classes``,
            ``num_frames``, ``img_size``, ``drop_path_rate``, ``checkpoint_blocks`` for activation
            checkpointing of the first N blocks, ...).
        checkpoint: official or converted file to start from; ``head_mode`` / ``head_label_map`` adapt a
            classifier with another number of classes (see :func:`build_classifier`).
        base_lr, min_lr, warmup_lr: per 256 clips; each is multiplied by ``clips per step * world size *
            accumulation / 256``, the clips per process and step being the data module's ``batch_size *
            num_sample`` (repeated clips count), or ``step_clips`` without such a data module.
        layer_decay: lr factor ``layer_decay ** (depth + 1 - layer id)`` per layer (``umt.optim.layer_id``).
        mixup_alpha, cutmix_alpha, mixup_prob, mixup_switch_prob: batch mixing (off when both alphas are 0);
            ``label_smoothing`` goes into the mixed targets, or into the cross-entropy without mixing.
        predictions_file: ``.csv`` or ``.json`` path for the per-video test predictions (top 5), or None.
    """

    def __init__(
        self,
        model: str = "umt_b16",
        checkpoint: str | None = None,
        head_mode: HeadMode = "load",
        head_label_map: str | None = None,
        model_options: dict[str, Any] | None = None,
        trust_pickle: bool = False,
        base_lr: float = 1e-3,
        min_lr: float = 1e-6,
        warmup_lr: float = 1e-6,
        warmup_epochs: float = 5,
        weight_decay: float = 0.05,
        layer_decay: float = 0.75,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        mixup_prob: float = 1.0,
        mixup_switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        step_clips: int | None = None,
        predictions_file: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_classifier(model, checkpoint, head_mode, head_label_map, trust_pickle,
                                      **(model_options or {}))
        classes = self.model.config.num_classes
        mixing = (mixup_alpha > 0 or cutmix_alpha > 0) and mixup_prob > 0
        self.mixup = VideoMixup(classes, mixup_alpha, cutmix_alpha, mixup_prob, mixup_switch_prob,
                                label_smoothing=label_smoothing) if mixing else None
        self.train_metrics = self.model.head.metrics("train")
        self.val_metrics = self.model.head.metrics("val")
        self.test_metrics = self.model.head.metrics("test")
        self.test_views: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []

    def forward(self, video: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` of ``video [B, 3, T, H, W]``."""
        return self.model(video)

    def _step_clips(self) -> int:
        """Clips per process and optimizer step before accumulation (repeated clips included)."""
        options = getattr(getattr(self.trainer, "datamodule", None), "hparams", {})
        if "batch_size" in options:
            return options["batch_size"] * options.get("num_sample", 1)
        if self.hparams.step_clips is None:
            raise ValueError("set step_clips (clips per process and step) when the data module has no batch_size")
        return self.hparams.step_clips

    def setup(self, stage: str) -> None:
        """Check that the data module's classes match the model's."""
        data = getattr(self.trainer, "datamodule", None)
        classes = getattr(data, "num_classes", None)
        if classes is not None and classes != self.model.config.num_classes:
            raise ValueError(f"the data has {classes} classes, the model {self.model.config.num_classes}: set "
                             "model_options.num_classes (and head_mode for a checkpoint with another head)")
        if self.mixup is not None and stage == "fit" and self._step_clips() % 2:
            raise ValueError("mixup / cutmix mix a batch with its reverse: batch_size * num_sample must be even")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Loss of ``{"video": [B, 3, T, H, W], "label": [B], ...}`` (B counts the repeated clips)."""
        video, label = batch["video"], batch["label"]
        target: Tensor = label
        if self.mixup is not None:
            video, target = self.mixup(video, label)
        logits = self.model(video)
        loss = self.model.head.loss(logits, target, self.hparams.label_smoothing)
        self.train_metrics.update(logits.detach(), label)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(label))
        self.log("train/lr", self.trainer.optimizers[0].param_groups[-1]["lr"], batch_size=len(label))
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=len(label))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """One view per video: loss and accuracy."""
        logits = self.model(batch["video"])
        self.val_metrics.update(logits, batch["label"])
        self.log("val/loss", torch.nn.functional.cross_entropy(logits, batch["label"]), sync_dist=True,
                 batch_size=len(logits))
        self.log_dict(self.val_metrics, prog_bar=True, batch_size=len(logits))

    def on_test_epoch_start(self) -> None:
        self.test_views = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Softmax of every view; merged per video at the end of the epoch."""
        probabilities = self.model(batch["video"]).float().softmax(-1)
        self.test_views.append((batch["index"], batch["view"], batch["label"], probabilities))

    def on_test_epoch_end(self) -> None:
        """Merge the views of every video over all processes, log per-video accuracies, write predictions."""
        video, view, label, probabilities = (torch.cat(parts) for parts in zip(*self.test_views, strict=True))
        world = self.trainer.world_size
        merged = merge_views(video, view, label, probabilities, rank=self.global_rank,
                             gather=lambda t: self.all_gather(t).reshape(world, *t.shape),
                             reduce=lambda t, op: self.trainer.strategy.reduce(t, reduce_op=op))
        share = torch.arange(len(merged.videos), device=video.device) % world == self.global_rank
        self.test_metrics.update(merged.probabilities[share], merged.labels[share])  # synced on compute
        self.log_dict(self.test_metrics.compute())
        self.log("test/videos", float(len(merged.videos)))
        self.log("test/views_per_video", merged.views.float().mean())
        self.test_metrics.reset()
        self.test_views = []
        path = self.hparams.predictions_file
        if path is not None and self.trainer.is_global_zero:
            write_predictions(path, merged, self._video_names())

    def _video_names(self) -> list[str] | None:
        dataset = getattr(getattr(self.trainer, "datamodule", None), "datasets", {}).get("test")
        records = getattr(dataset, "records", None)
        return None if records is None else [str(record.path) for record in records]

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over layer-decay groups; per-step warm-up then cosine, all lrs scaled by the global batch."""
        h = self.hparams
        scale = self._step_clips() * self.trainer.world_size * self.trainer.accumulate_grad_batches / 256
        groups = layer_decay_groups(list(self.model.named_parameters()), self.model.config.depth, h.layer_decay,
                                    h.weight_decay, NO_WEIGHT_DECAY)
        for group in groups:
            group["lr"] = h.base_lr * scale * group["lr_scale"]
        optimizer = torch.optim.AdamW(groups, lr=h.base_lr * scale, betas=tuple(h.betas), eps=h.eps)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        warmup = round(total * h.warmup_epochs / epochs)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total, h.min_lr / h.base_lr, h.warmup_lr / h.base_lr))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
