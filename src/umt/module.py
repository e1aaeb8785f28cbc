"""UMTPretrainModule: stage-1 UMT pre-training (masked student aligned with a frozen CLIP teacher) in Lightning."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import grad_norm
from torch import Tensor, nn

from umt.heads.alignment import AlignmentHead, alignment_layers
from umt.losses import uta_loss
from umt.masking import attention_mask
from umt.models.factory import create_model
from umt.models.teacher import create_teacher
from umt.optim import warmup_cosine
from umt.rng import ResumesRandomStates

TEACHER_PREFIX = "teacher."


class LeavesTeacherOut:
    """LightningModule mixin for a module with a frozen ``teacher`` (or None) and ``teacher`` /
    ``teacher_weights`` hyper-parameters: saved checkpoints leave the teacher's weights out and name the teacher
    instead; loading puts this module's teacher weights back, so that loading stays strict."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(TEACHER_PREFIX)]:
            del state[key]
        checkpoint["umt_teacher"] = {"name": self.hparams.teacher, "weights": self.hparams.teacher_weights}
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.teacher is not None:
            checkpoint["state_dict"].update({TEACHER_PREFIX + k: v for k, v in self.teacher.state_dict().items()})
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]


class UMTPretrainModule(LeavesTeacherOut, ResumesRandomStates, L.LightningModule):
    """Stage 1 of UMT (SPEC.md §1): the frozen teacher sees every frame, its last-block CLS attention picks the
    visible ``1 - mask_ratio`` of each frame's tokens, the student encodes only those, and K alignment heads
    regress the teacher's last K layers at the visible positions with ``mean(2 - 2 cos)``.

    The teacher never enters the optimizer, and is left out of saved checkpoints (they name it instead and
    take its weights back from ``teacher_weights`` when loaded).

    Args:
        model: student size (``umt_b16``, ``umt_l16``); ``model_options`` override its fields.
        teacher: teacher size (``clip_b16``, ``clip_l14``); ``teacher_weights`` is a CLIP file (random without
            one: only for tests); ``teacher_options`` override its fields.
        mask_ratio: share of each frame's tokens the student does not see.
        align_layers: K, the student and teacher layers aligned (the last K of each).
        base_lr: learning rate per 256 clips; the peak is ``base_lr * batch_size * world size * accumulation
            / 256`` (``min_lr`` likewise).
        batch_size: clips per process and step, used for the lr scaling when the trainer has no data module
            (otherwise the data module's ``batch_size``).
        warmup_epochs: linear warm-up from 0, then per-step cosine to ``min_lr``.
        seed: masks are drawn from a generator seeded by ``(seed, global step)``; with the random states
            saved in checkpoints this makes a resumed run follow the uninterrupted one.
    """

    def __init__(
        self,
        model: str = "umt_b16",
        model_options: dict[str, Any] | None = None,
        teacher: str = "clip_b16",
        teacher_weights: str | None = None,
        teacher_options: dict[str, Any] | None = None,
        mask_ratio: float = 0.8,
        align_layers: int = 6,
        base_lr: float = 1.5e-4,
        min_lr: float = 1e-5,
        warmup_epochs: float = 40,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        options = {"num_classes": 0, "final_norm": True, "pos_embed": "extend", **(model_options or {})}
        self.encoder = create_model(model, **options).encoder
        self.encoder.apply(_xavier_linear)
        self.teacher = create_teacher(teacher, teacher_weights, **(teacher_options or {}))
        config = self.encoder.config
        if self.teacher.config.grid != config.grid[0]:
            raise ValueError(f"teacher grid {self.teacher.config.grid} != student grid {config.grid[0]}: the masks "
                             "of the teacher's attention must index the student's tokens")
        self.return_layers = alignment_layers(config.depth, align_layers)
        self.head = AlignmentHead(config.embed_dim, self.teacher.config.output_dim, config.num_tokens, align_layers)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Loss of one batch ``{"video": [B, 3, T, H, W], ...}``."""
        video = batch["video"]
        with torch.no_grad():
            target = self.teacher(video)
            generator = torch.Generator(video.device).manual_seed(self.hparams.seed * 1_000_003 + self.global_step)
            mask = attention_mask(target.cls_attention.float(), video.shape[2], self.hparams.mask_ratio, generator)
            visible = target.features[:, ~mask].reshape(len(target.features), video.shape[0], -1,
                                                         target.features.shape[-1])
        aligned = self.head(self.encoder(video, mask, self.return_layers), mask)
        loss = uta_loss(aligned, visible)
        self.log("train/loss", loss, prog_bar=True, batch_size=video.shape[0])
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=video.shape[0])
        self.log("train/visible_tokens", (~mask).sum(1).float().mean(), batch_size=video.shape[0])
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.log("train/grad_norm", grad_norm(self, norm_type=2)["grad_2.0_norm_total"])

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW without weight decay on 1-D parameters; lr warm-up and cosine per step."""
        h = self.hparams
        trainable = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        groups = [{"params": [p for _, p in trainable if p.ndim > 1], "weight_decay": h.weight_decay},
                  {"params": [p for _, p in trainable if p.ndim <= 1], "weight_decay": 0.0}]
        data = getattr(self.trainer, "datamodule", None)
        batch_size = getattr(data, "hparams", {}).get("batch_size", h.batch_size)
        scale = batch_size * self.trainer.world_size * self.trainer.accumulate_grad_batches / 256
        optimizer = torch.optim.AdamW(groups, lr=h.base_lr * scale, betas=h.betas, eps=1e-8)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = round(total * h.warmup_epochs / max(self.trainer.max_epochs or 1, 1))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total, h.min_lr / h.base_lr))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}



def _xavier_linear(module: nn.Module) -> None:
    """Official pre-training init of the student: Linear xavier-uniform with zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
