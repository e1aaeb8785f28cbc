"""VideoTextModule: UMT stage-2 video-text pre-training, retrieval fine-tuning and evaluation in Lightning."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from umt.checkpoints import load_video_text_weights, read_video_text_checkpoint
from umt.data.text import load_tokenizer
from umt.heads.video_text import LOSS_NAMES, LossWeights, VideoTextHead
from umt.models.teacher import create_teacher
from umt.models.video_text import VIDEO_TEXT_CONFIGS, VideoTextConfig, VideoTextModel, create_video_text_model
from umt.module import LeavesTeacherOut
from umt.optim import warmup_cosine
from umt.rng import ResumesRandomStates

logger = logging.getLogger("umt")

MODEL_PREFIX = "model."
ALIGNMENT_PREFIX = "head.alignment."


def video_text_config(model: str | VideoTextConfig = "umt_b16", vision_options: dict[str, Any] | None = None,
                      text_options: dict[str, Any] | None = None, embed_dim: int | None = None) -> VideoTextConfig:
    """A named stage-2 config (``umt_b16``, ``umt_l16``) with field overrides; the fusion layers' input width
    follows the video width."""
    if isinstance(model, str):
        if model not in VIDEO_TEXT_CONFIGS:
            raise KeyError(f"unknown video-text model {model!r}; known: {', '.join(sorted(VIDEO_TEXT_CONFIGS))}")
        model = VIDEO_TEXT_CONFIGS[model]
    vision = model.vision.replace(**(vision_options or {}))
    text = dataclasses.replace(model.text, **{**(text_options or {}), "encoder_width": vision.embed_dim})
    return VideoTextConfig(vision, text, embed_dim or model.embed_dim, model.temp)


def read_student(source: str | Path) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """A stage-1 student's encoder state (``VideoViT`` keys, final norm included) and its alignment heads
    (``AlignmentHead`` keys), from an official file (``encoder.*``, ``clip_decoder.*``; bare or under
    ``model`` / ``module``) or a ``UMTPretrainModule`` checkpoint (``encoder.*``, ``head.heads.*``).

    Raises:
        ValueError: no ``encoder.*`` keys in the file.
    """
    obj = torch.load(source, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    encoder, alignment = {}, {}
    for key, value in obj.items():
        key = key.removeprefix("module.")
        if key.startswith("encoder."):
            encoder[key.removeprefix("encoder.")] = value
        elif key.startswith(("clip_decoder.", "head.heads.")):
            alignment["heads." + key.split(".", 2 if key.startswith("head.") else 1)[-1]] = value
    if not encoder:
        raise ValueError(f"{source} holds no stage-1 student (no encoder.* keys)")
    return encoder, alignment


def read_module_state(source: str | Path) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Any]]:
    """The ``VideoTextModel`` state, the alignment heads' state and the hyper-parameters of a ``VideoTextModule``
    Lightning checkpoint.

    Raises:
        ValueError: the file is not such a checkpoint.
    """
    obj = torch.load(source, map_location="cpu", weights_only=True)
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if not state or not any(k.startswith(MODEL_PREFIX) for k in state):
        raise ValueError(f"{source} is not a VideoTextModule checkpoint (no state_dict with model.* keys)")
    model = {k.removeprefix(MODEL_PREFIX): v for k, v in state.items() if k.startswith(MODEL_PREFIX)}
    alignment = {k.removeprefix(ALIGNMENT_PREFIX): v for k, v in state.items() if k.startswith(ALIGNMENT_PREFIX)}
    return model, alignment, dict(obj.get("hyper_parameters", {}))


def is_module_checkpoint(source: str | Path) -> bool:
    """Whether ``source`` is a Lightning checkpoint (``.ckpt``) rather than an official file."""
    return Path(source).suffix == ".ckpt"


def load_model(source: str | Path, trust_pickle: bool = False) -> tuple[VideoTextModel, dict[str, Any]]:
    """A ready ``VideoTextModel`` from a ``VideoTextModule`` checkpoint (``.ckpt``: sizes from its
    hyper-parameters) or an official stage-2 / retrieval file (``umt_b16`` or ``umt_l16`` by its width), and
    the hyper-parameters (``tokenizer``, ``max_length``; empty for official files)."""
    if is_module_checkpoint(source):
        state, _, hparams = read_module_state(source)
        config = video_text_config(hparams.get("model", "umt_b16"), hparams.get("vision_options"),
                                   hparams.get("text_options"), hparams.get("embed_dim"))
        model = VideoTextModel(config)
        model.load_state_dict(state, strict=True)
        return model, hparams
    loaded = read_video_text_checkpoint(source, trust_pickle)
    width = loaded.state_dict["vision_encoder.encoder.patch_embed.proj.weight"].shape[0]
    name = next(n for n, c in VIDEO_TEXT_CONFIGS.items() if c.vision.embed_dim == width)
    return create_video_text_model(name, loaded), {}


class VideoTextModule(LeavesTeacherOut, ResumesRandomStates, L.LightningModule):
    """Stage-2 UMT (SPEC.md §3): a ``VideoTextModel`` trained with the video-text head's losses (UTA against an
    optional frozen CLIP teacher, VTC, VTM, MLM), evaluated by retrieval over whole splits.

    Training batches: ``{"video": [B, 3, T, H, W], "caption": list[str], "index": [B] (same id = positive),
    "media": "video" | "image"}``. Evaluation batches: ``{"video", "index": [B] media positions}``; the data
    module provides ``retrieval_texts(stage)`` and ``retrieval_ground_truth(stage)`` (``stage`` is ``"val"``
    or ``"test"``). Logged: ``{stage}/`` ITM re-ranked recalls (official model selection) and ``{stage}_emb/``
    contrastive-only recalls (``txt_r*``: video->text, ``img_r*``: text->video, ``r_mean``).

    The teacher never enters the optimizer and is left out of saved checkpoints (its name is recorded instead).

    Args:
        model: stage-2 size (``umt_b16``, ``umt_l16``); ``vision_options`` / ``text_options`` override fields of
            its ``ModelConfig`` / ``TextConfig`` (e.g. ``num_frames``, ``drop_path_rate``); ``embed_dim`` the
            projection width.
        checkpoint: initial weights: an official stage-2 / retrieval file, or a ``.ckpt`` of this module.
        student_checkpoint: else a stage-1 student for the video side (official or ``UMTPretrainModule``) ...
        bert: ... and a Hugging Face BERT folder for the text side (cross-attention, projections and the ITM
            head start fresh).
        tokenizer: tokenizer name or folder; ``max_length`` tokens per text (official: 32 in pre-training).
        teacher: CLIP teacher for UTA (``clip_b16``, ``clip_l14``; None: no UTA), ``teacher_weights`` its file,
            ``teacher_options`` overrides of its config.
        loss_weights: weights by name (``uta``, ``vtc``, ``vtm``, ``mlm``; unnamed ones 1). Default: all four with
            a teacher (pre-training), VTC + VTM without (retrieval fine-tuning).
        align_layers, video_mask_ratio, image_mask_ratio, mlm_probability, hard_negatives, k_test,
            eval_batch_size: see ``VideoTextHead``.
        lr: peak AdamW lr (not batch-scaled); ``text_lr`` another one for the text encoder (None: the same).
        weight_decay: on weights with more than one dimension (not biases, norms, ``temp``).
        warmup_epochs: linear warm-up (from 0, floored at ``min_lr_ratio``), then per-step cosine to
            ``min_lr_ratio`` x peak.
        seed: masks, VTM negatives and MLM corruption come from a generator seeded by ``(seed, global step)``.
        trust_pickle: allow official files holding Python objects besides tensors.
    """

    def __init__(
        self,
        model: str = "umt_b16",
        vision_options: dict[str, Any] | None = None,
        text_options: dict[str, Any] | None = None,
        embed_dim: int | None = None,
        checkpoint: str | None = None,
        student_checkpoint: str | None = None,
        bert: str | None = None,
        tokenizer: str = "bert-base-uncased",
        max_length: int = 32,
        teacher: str | None = None,
        teacher_weights: str | None = None,
        teacher_options: dict[str, Any] | None = None,
        loss_weights: dict[str, float] | None = None,
        align_layers: int = 6,
        video_mask_ratio: float = 0.8,
        image_mask_ratio: float = 0.5,
        mlm_probability: float = 0.5,
        hard_negatives: bool = True,
        k_test: int = 128,
        eval_batch_size: int = 32,
        lr: float = 1e-4,
        text_lr: float | None = None,
        weight_decay: float = 0.02,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_epochs: float = 1.0,
        min_lr_ratio: float = 0.01,
        seed: int = 0,
        trust_pickle: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if checkpoint is not None and (student_checkpoint is not None or bert is not None):
            raise ValueError("give either checkpoint, or student_checkpoint and/or bert, not both")
        config = video_text_config(model, vision_options, text_options, embed_dim)
        self.model = VideoTextModel(config)
        self.teacher = None if teacher is None else create_teacher(teacher, teacher_weights, **(teacher_options or {}))
        if self.teacher is not None and self.teacher.config.grid != config.vision.grid[0]:
            raise ValueError(f"teacher grid {self.teacher.config.grid} != student grid {config.vision.grid[0]}: the "
                             "masks of the teacher's attention must index the student's tokens")
        defaults = {"uta": 1.0, "mlm": 1.0} if teacher is not None else {"uta": 0.0, "mlm": 0.0}
        unknown = set(loss_weights or {}) - set(LOSS_NAMES)
        if unknown:
            raise ValueError(f"unknown loss names {sorted(unknown)}; known: {', '.join(LOSS_NAMES)}")
        weights = LossWeights(**(defaults | (loss_weights or {})))
        self.head = VideoTextHead(
            load_tokenizer(tokenizer), max_length, weights, embed_dim=config.vision.embed_dim,
            num_positions=config.vision.num_tokens, depth=config.vision.depth,
            teacher_dim=None if self.teacher is None else self.teacher.config.output_dim, align_layers=align_layers,
            video_mask_ratio=video_mask_ratio, image_mask_ratio=image_mask_ratio, mlm_probability=mlm_probability,
            hard_negatives=hard_negatives, k_test=k_test, eval_batch_size=eval_batch_size)
        self._initialise(checkpoint, student_checkpoint, bert)
        self.media: list[tuple[Tensor, Tensor, Tensor]] = []

    def _initialise(self, checkpoint: str | None, student_checkpoint: str | None, bert: str | None) -> None:
        """Load the initial weights the arguments name (see the class docstring)."""
        alignment: dict[str, Tensor] = {}
        if checkpoint is not None and is_module_checkpoint(checkpoint):
            state, alignment, _ = read_module_state(checkpoint)
            self.model.load_state_dict(state, strict=True)
        elif checkpoint is not None:
            load_video_text_weights(self.model, read_video_text_checkpoint(checkpoint, self.hparams.trust_pickle))
        if student_checkpoint is not None:
            encoder, alignment = read_student(student_checkpoint)
            self.model.vision_encoder.encoder.load_state_dict(encoder, strict=True)
        if bert is not None:
            self.model.text_encoder.load_bert(bert)
        if self.head.alignment is not None:
            if alignment:
                self.head.alignment.load_state_dict(alignment, strict=True)
            elif checkpoint or student_checkpoint:
                logger.info("alignment heads initialised fresh (the initial checkpoint has none)")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Weighted sum of the head's losses on one batch (see the class docstring for its keys)."""
        video = batch["video"]
        generator = torch.Generator(video.device).manual_seed(self.hparams.seed * 1_000_003 + self.global_step)
        losses = self.head.losses(self.model, batch, self.teacher, generator)
        loss, size = losses.pop("loss"), video.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_dict({f"train/{name}": value for name, value in losses.items()}, batch_size=size)
        self.log("train/temp", self.model.temp.detach(), batch_size=size)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=size)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.media = []

    def on_test_epoch_start(self) -> None:
        self.media = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Keep this batch's media features for the retrieval at the end of the epoch."""
        tokens, embeddings = self.head.media_features(self.model, batch["video"])
        self.media.append((tokens, embeddings, batch["index"]))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.log_retrieval("val")

    def on_test_epoch_end(self) -> None:
        self.log_retrieval("test")

    def gather_media(self) -> tuple[Tensor, Tensor]:
        """Every process's media features in media order, each once: tokens ``[V, N, C]`` (on the CPU) and
        per-frame embeddings ``[V, T, E]``.

        Raises:
            ValueError: a media position in ``0..V-1`` was never seen (e.g. ``limit_val_batches`` was set).
        """
        tokens, embeddings, index = (torch.cat(part) for part in zip(*self.media, strict=True))
        if self.trainer.world_size > 1:
            tokens, embeddings, index = (self.all_gather(t).flatten(0, 1) for t in (tokens, embeddings, index))
        count = int(index.max()) + 1
        seen = torch.zeros(count, dtype=torch.bool, device=index.device).index_fill_(0, index, True)
        if not seen.all():
            raise ValueError(f"retrieval needs every media of the split: {int((~seen).sum())} of {count} positions "
                             "were not evaluated")
        ordered_tokens = tokens.new_empty(count, *tokens.shape[1:]).index_copy_(0, index, tokens)
        ordered_embeddings = embeddings.new_empty(count, *embeddings.shape[1:]).index_copy_(0, index, embeddings)
        return ordered_tokens.cpu(), ordered_embeddings

    def log_retrieval(self, stage: str) -> dict[str, Tensor]:
        """Retrieval over the whole split: ITC ranks, then ITM re-ranking of the top ``k_test`` (queries split
        across processes); logs and returns ``{stage}/...`` (re-ranked) and ``{stage}_emb/...`` (ITC only)."""
        data = self.trainer.datamodule
        tokens, embeddings = self.gather_media()
        self.media = []
        texts = self.head.text_features(self.model, data.retrieval_texts(stage), self.device)
        report = self.head.evaluate(self.model, tokens, embeddings, texts, data.retrieval_ground_truth(stage),
                                    self.global_rank, self.trainer.world_size)
        metrics = {f"{stage}/{k}": v for k, v in report["itm"].items()}
        metrics |= {f"{stage}_emb/{k}": v for k, v in report["itc"].items()}
        self.log_dict(metrics)
        return metrics

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (no weight decay on 1-D parameters and biases; ``text_lr`` for the text encoder if set) with
        linear warm-up and per-step cosine."""
        h = self.hparams
        groups: dict[tuple[bool, bool], dict[str, Any]] = {}
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            text = name.startswith(MODEL_PREFIX + "text_encoder.")
            decay = parameter.ndim > 1 and not name.endswith(".bias")
            group = groups.setdefault((text, decay), {
                "params": [], "weight_decay": h.weight_decay if decay else 0.0,
                "lr": h.text_lr if text and h.text_lr is not None else h.lr})
            group["params"].append(parameter)
        optimizer = torch.optim.AdamW(list(groups.values()), lr=h.lr, betas=h.betas, eps=1e-8)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = round(total * h.warmup_epochs / max(self.trainer.max_epochs or 1, 1))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(warmup_cosine(step, warmup, total, h.min_lr_ratio), h.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

