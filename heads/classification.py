"""Classification head of the official fine-tuned UMT models: mean pool -> fc_norm -> dropout -> linear, with the
official fine-tuning loss (mixup / cutmix, label smoothing) and the multi-view test."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from timm.layers import trunc_normal_
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import Tensor, nn

from umt.checkpoints import CheckpointError, CheckpointParts, HeadMode
from umt.data.transforms import VideoMixup
from umt.heads.base import Batch, EncoderStep, EvalContext, Head, HeadContext, load_module_part

if TYPE_CHECKING:
    from torchmetrics import MetricCollection
from umt.models.config import HeadPool
from umt.models.vit import EncoderOutput
from umt.plots import write_classification_plots
from umt.views import merge_views, write_predictions


@dataclass(frozen=True)
class MixupConfig:
    """Batch mixing of the official fine-tuning (timm ``Mixup``; off when both alphas are 0).

    Attributes:
        mixup_alpha: Beta parameter of mixup.
        cutmix_alpha: Beta parameter of cutmix.
        prob: chance of mixing a batch.
        switch_prob: chance of cutmix instead of mixup when both are on.
    """

    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5

    @property
    def active(self) -> bool:
        """Whether any batch is mixed."""
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0


class ClassificationHead(Head):
    """Mean-pooled classifier over the encoder's tokens (SPEC.md §2).

    ``fc_norm`` (LayerNorm) normalises the pooled token; with ``num_classes=0`` the head returns the normalised
    pooled features ``[B, C]``. Training: mixup / cutmix with label smoothing, soft-target cross-entropy.
    Validation: one view per video. Test: the softmax of every view averaged per video over all processes
    (padded duplicates counted once): ``top1``, ``top5``, ``mean_class_accuracy``, optionally written per video.

    Args:
        context: what the module knows (width, frames, the data's classes).
        num_classes: classes (None: the data module's).
        drop_rate: dropout before the linear layer.
        init_scale: factor on the initial linear weight (official 0.001).
        head_pool: ``mean`` over all tokens (official), or ``frames``: per-frame means concatenated in time order.
        norm_eps: epsilon of ``fc_norm``.
        label_smoothing: in the mixed targets, or in the cross-entropy without mixing.
        mixup: batch mixing.
        head_mode: what to do with a checkpoint classifier of another size: ``load`` (fail), ``reset``,
            ``k710_to_k400`` (first 400 rows).
        head_label_map: JSON list of the checkpoint rows to keep (the official ``label_mixto{600,700}.json``).
        predictions_file: ``.csv`` or ``.json`` path for the per-video test predictions (top 5), or None.
        plot_dir: folder for the test's ``confusion_matrix.png`` and ``per_class_accuracy.png``, or None.
    """

    def __init__(self, context: HeadContext, num_classes: int | None = None, drop_rate: float = 0.0,
                 init_scale: float = 0.001, head_pool: HeadPool = "mean", norm_eps: float = 1e-6,
                 label_smoothing: float = 0.1, mixup: MixupConfig = MixupConfig(mixup_alpha=0.0, cutmix_alpha=0.0),
                 head_mode: HeadMode = "load", head_label_map: str | None = None,
                 predictions_file: str | None = None, plot_dir: str | None = None) -> None:
        super().__init__(context)
        classes = context.data.num_classes if num_classes is None else num_classes
        if classes is None:
            raise ValueError("the classification head needs num_classes (or a data module that states it)")
        if context.data.num_classes is not None and num_classes is not None and num_classes != context.data.num_classes:
            raise ValueError(f"the data has {context.data.num_classes} classes, the head {num_classes}: leave "
                             "num_classes unset to take the data's (head_mode adapts a checkpoint's classifier)")
        self.num_classes = classes
        self.pool_frames = context.num_frames // context.tubelet_size if head_pool == "frames" else None
        self.label_smoothing = label_smoothing
        self.head_mode, self.head_label_map = head_mode, head_label_map
        self.predictions_file, self.plot_dir = predictions_file, plot_dir
        self.fc_norm = nn.LayerNorm(context.embed_dim, eps=norm_eps)
        self.dropout = nn.Dropout(drop_rate)
        width = context.embed_dim * (self.pool_frames or 1)
        self.fc = nn.Linear(width, classes) if classes > 0 else nn.Identity()
        if isinstance(self.fc, nn.Linear):
            trunc_normal_(self.fc.weight, std=0.02)
            self.fc.weight.data.mul_(init_scale)
            nn.init.zeros_(self.fc.bias)
        self.mixup = VideoMixup(classes, mixup.mixup_alpha, mixup.cutmix_alpha, mixup.prob, mixup.switch_prob,
                                label_smoothing=label_smoothing) if mixup.active and classes > 0 else None
        self.val_metrics = self.metrics("val") if classes >= 2 else None
        self.test_metrics = self.metrics("test") if classes >= 2 else None
        self.test_views: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []

    def pool(self, out: EncoderOutput, per_frame: bool = False) -> Tensor:
        """``fc_norm`` of the token mean: ``[B, C]``, or ``[B, T, C]`` per frame (unmasked tokens only)."""
        return self.fc_norm(out.mean(per_frame))

    def forward(self, out: EncoderOutput) -> Tensor:
        """Logits ``[B, num_classes]`` (pooled features ``[B, C]``, or ``[B, T * C]`` with ``head_pool="frames"``,
        when ``num_classes=0``)."""
        pooled = self.pool(out, per_frame=True).flatten(1) if self.pool_frames else self.pool(out)
        return self.fc(self.dropout(pooled))

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Official fine-tuning loss of logits ``[B, K]``: soft-target cross-entropy for mixed targets ``[B, K]``
        (label smoothing is already in them), else cross-entropy on class indices ``[B]`` with label smoothing."""
        if target.ndim == 2:
            return SoftTargetCrossEntropy()(logits, target)
        if self.label_smoothing > 0:
            return LabelSmoothingCrossEntropy(self.label_smoothing)(logits, target)
        return nn.functional.cross_entropy(logits, target)

    def transform_batch(self, batch: Batch) -> Batch:
        """Mix a training batch (videos and soft targets ``"target" [B, K]``) when mixup / cutmix is on."""
        if self.mixup is None:
            return batch
        if len(batch["label"]) % 2:
            raise ValueError("mixup / cutmix mix a batch with its reverse: batch_size * num_sample must be even")
        video, target = self.mixup(batch["video"], batch["label"])
        return {**batch, "video": video, "target": target}

    def losses(self, step: EncoderStep, batch: Batch) -> dict[str, Tensor]:
        return {"loss": self.loss(self(step.output), batch.get("target", batch["label"]))}

    def eval_epoch_start(self, stage: str) -> None:
        self.test_views = []
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        if metrics is not None:
            metrics.reset()

    def eval_step(self, step: EncoderStep, batch: Batch, stage: str) -> dict[str, Tensor]:
        """Validation: one view per video, metrics and loss. Test: keep every view's softmax for the merge."""
        logits = self(step.output)
        if stage == "test":
            self.test_views.append((batch["index"], batch["view"], batch["label"], logits.float().softmax(-1)))
            return {}
        if self.val_metrics is not None:
            self.val_metrics.update(logits, batch["label"])
        return {"loss": nn.functional.cross_entropy(logits.float(), batch["label"])}

    def eval_epoch_end(self, context: EvalContext) -> dict[str, Tensor | float]:
        if context.stage == "val":
            return {} if self.val_metrics is None else self.val_metrics.compute()
        if not self.test_views or self.test_metrics is None:
            return {}
        video, view, label, probabilities = (torch.cat(parts) for parts in zip(*self.test_views, strict=True))
        self.test_views = []
        merged = merge_views(video, view, label, probabilities, rank=context.rank, gather=context.gather,
                             reduce=context.reduce)
        share = torch.arange(len(merged.videos), device=video.device) % context.world_size == context.rank
        self.test_metrics.update(merged.probabilities[share], merged.labels[share])  # synced on compute
        metrics: dict[str, Tensor | float] = dict(self.test_metrics.compute())
        metrics |= {"videos": float(len(merged.videos)), "views_per_video": merged.views.float().mean()}
        if self.predictions_file is not None and context.is_global_zero:
            write_predictions(self.predictions_file, merged, _video_names(context.datamodule))
        if self.plot_dir is not None and context.is_global_zero:
            write_classification_plots(merged.probabilities, merged.labels, self.plot_dir,
                                       self.context.data.class_names)
        return metrics

    def predict(self, step: EncoderStep, batch: Batch) -> Tensor:
        """Class probabilities ``[B, K]``."""
        return self(step.output).float().softmax(-1)

    def metrics(self, stage: str) -> MetricCollection:
        """``top1``, ``top5`` (capped by the classes) and ``mean_class_accuracy`` over scores ``[B, K]``."""
        from torchmetrics import MetricCollection  # imported here: ``umt info`` / ``classify`` need no metrics
        from torchmetrics.classification import MulticlassAccuracy

        classes = self.num_classes
        if classes < 2:
            raise ValueError("metrics need a classifier with at least 2 classes")
        return MetricCollection({
            "top1": MulticlassAccuracy(classes, top_k=1, average="micro"),
            "top5": MulticlassAccuracy(classes, top_k=min(5, classes), average="micro"),
            "mean_class_accuracy": MulticlassAccuracy(classes, top_k=1, average="macro"),
        })

    def load_state(self, parts: CheckpointParts) -> tuple[set[str], list[str]]:
        """A classifier's ``head.*`` (``fc_norm`` and ``fc``; rows adapted by ``head_label_map`` / ``head_mode``);
        a stage-1 or stage-2 file leaves the head fresh."""
        module = load_module_part(self, parts, self.name)
        if module is not None:
            return module
        state = {k.removeprefix("head."): v for k, v in parts.rest.items() if k.startswith("head.")}
        used = {"head." + k for k in state}
        own = self.state_dict()
        if "fc.weight" in state and "fc.weight" in own and state["fc.weight"].shape[0] != own["fc.weight"].shape[0]:
            state = self._adapt_rows(state, own["fc.weight"].shape[0])
        mismatched = [f"heads.{self.name}.{k}: checkpoint {list(v.shape)} vs head {list(own[k].shape)}"
                      for k, v in state.items() if k in own and v.shape != own[k].shape]
        unexpected = sorted(set(state) - set(own))
        if mismatched or unexpected:
            raise CheckpointError("the checkpoint's classifier does not fit the head:\n  " +
                                  "\n  ".join(mismatched + [f"{k}: not in the head" for k in unexpected]))
        fresh = sorted(set(own) - set(state))
        self.load_state_dict({**own, **state}, strict=True)
        return used, fresh

    def _adapt_rows(self, state: dict[str, Tensor], rows: int) -> dict[str, Tensor]:
        """The checkpoint classifier's rows for a head of ``rows`` classes (label map, k710 -> k400 or reset)."""
        have = state["fc.weight"].shape[0]
        if self.head_label_map is not None:
            index = torch.tensor(json.loads(Path(self.head_label_map).read_text()), dtype=torch.long)
            return {k: v[index] if k.startswith("fc.") else v for k, v in state.items()}
        if self.head_mode == "reset":
            return {k: v for k, v in state.items() if not k.startswith("fc.")}
        if self.head_mode == "k710_to_k400" and have == 710 and rows == 400:
            return {k: v[:400] if k.startswith("fc.") else v for k, v in state.items()}
        raise CheckpointError(f"the checkpoint's classifier has {have} classes, the head {rows}: set head_mode "
                              "(reset, k710_to_k400) or head_label_map")


def _video_names(datamodule: Any) -> list[str] | None:
    dataset = getattr(datamodule, "datasets", {}).get("test") if datamodule is not None else None
    records = getattr(dataset, "records", None)
    return None if records is None else [str(record.path) for record in records]
