"""UMTModule: the one LightningModule of the library, a masked student-teacher video encoder with task heads."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import grad_norm
from torch import Tensor, nn

from umt.checkpoints import CheckpointParts, check_fit, key_groups, read_parts
from umt.errors import UsageError
from umt.heads.base import Batch, DataInfo, EncoderStep, EvalContext, Head, HeadContext, HeadFactory
from umt.masking import attention_mask
from umt.models.teacher import CLIPTeacher, create_teacher
from umt.models.vit import VideoViT, _init_weights
from umt.optim import build_optimizer, schedule_multiplier
from umt.options import EncoderConfig, MaskingConfig, OptimizerConfig, TeacherSpec
from umt.plugins import factory_target, head_name, resolve_class_paths
from umt.rng import collect_rng_states, set_rng_states

logger = logging.getLogger("umt")

TEACHER_PREFIX = "teacher."
AUTOCAST = {"float16": torch.float16, "bfloat16": torch.bfloat16, "none": None}


class UMTModule(L.LightningModule):
    """A ``VideoViT`` encoder, an optional frozen CLIP teacher with its masking policy, and task heads.

    Per training batch the teacher (when a head asks for its targets) sees every frame, its last-block CLS
    attention hides ``masking.video_ratio`` of each frame's tokens (``image_ratio`` for images), the encoder runs
    once on what is left, and every head gets the same ``EncoderStep``; the loss is the sum over heads of
    ``loss_weights[head] * sum(head losses)``. Evaluation runs the encoder on every token. The optimizer, its
    schedule, the checkpoint policy (teacher left out and named, random states saved for an exact resume) and the
    logging (``{stage}/{head}/{metric}``) are the same for every task.

    Args:
        heads: head factories (entry-point names or class paths in recipes) with their options.
        encoder: the video encoder's size and options.
        teacher: the frozen CLIP teacher, or None (no alignment loss).
        masking: the attention-masking ratios (used with a teacher).
        optimizer: AdamW, layer decay, lr scaling and schedule.
        loss_weights: weight of each head's summed losses by head name (unnamed heads: 1; 0: evaluation only).
        checkpoint: initial weights: any file ``umt.checkpoints.read_parts`` reads; the encoder loads strictly,
            each head takes its own part.
        trust_pickle: allow checkpoint files holding Python objects besides tensors (trusted sources only).
        data_info: what the data module states (classes, clips per step, frames and size: the encoder's input
            where ``encoder`` leaves it None); linked by the CLI.
        seed: masks, negatives and corruption come from a generator seeded by ``(seed, global step, rank)``.
        compile_blocks: ``torch.compile`` every encoder block and the teacher's blocks (in place: the checkpoint
            keys stay; each compiles on its first call).
    """

    def __init__(
        self,
        heads: Sequence[HeadFactory | dict[str, Any]],
        encoder: EncoderConfig = EncoderConfig(),
        teacher: TeacherSpec | None = None,
        masking: MaskingConfig = MaskingConfig(),
        optimizer: OptimizerConfig = OptimizerConfig(),
        loss_weights: dict[str, float] | None = None,
        checkpoint: str | None = None,
        trust_pickle: bool = False,
        data_info: DataInfo | None = None,
        seed: int = 0,
        compile_blocks: bool = False,
    ) -> None:
        super().__init__()
        heads = [head_factory(spec) if isinstance(spec, dict) else spec for spec in heads]
        encoder, teacher = typed(EncoderConfig, encoder), typed(TeacherSpec, teacher)
        masking = typed(MaskingConfig, masking)
        optimizer, data_info = typed(OptimizerConfig, optimizer), typed(DataInfo, data_info)
        if data_info is not None:
            encoder = encoder.with_input(data_info.num_frames, data_info.img_size)  # saved as resolved
        self.save_hyperparameters(ignore=["heads"])
        self.hparams["heads"] = [head_spec(factory) for factory in heads]
        self.optimizer_config, self.masking, self.teacher_spec = optimizer, masking, teacher
        self.data_info, self.seed = data_info, seed
        if not heads:
            raise ValueError("UMTModule needs at least one head")
        parts = None if checkpoint is None else read_parts(checkpoint, trust_pickle)
        self.encoder = VideoViT(encoder.model_config(None if parts is None else parts.hints))
        if encoder.init == "xavier":
            self.encoder.apply(_xavier_linear)
        self.teacher: CLIPTeacher | None = None
        if teacher is not None:
            self.teacher = create_teacher(teacher.name, teacher.weights, AUTOCAST[teacher.autocast],
                                          **teacher.overrides())
            if self.teacher.config.grid != self.encoder.config.grid[0]:
                raise ValueError(f"teacher grid {self.teacher.config.grid} != student grid "
                                 f"{self.encoder.config.grid[0]}: the teacher's attention must index the student's "
                                 "tokens (set teacher.image_size)")
        config = self.encoder.config
        self.heads = nn.ModuleDict()
        for factory in heads:
            name = _head_name(factory, self.heads)
            context = HeadContext(name, config.embed_dim, config.depth, config.num_frames, config.tubelet_size,
                                  config.grid, None if self.teacher is None else self.teacher.config.output_dim,
                                  None if self.teacher is None else self.teacher.config.return_layers,
                                  data_info or DataInfo())
            head = factory(context)
            if not isinstance(head, Head):
                raise TypeError(f"head {name!r} is a {type(head).__name__}, not a umt.heads.base.Head")
            self.heads[name] = head
        self.loss_weights = {name: float((loss_weights or {}).get(name, 1.0)) for name in self.heads}
        unknown = sorted(set(loss_weights or {}) - set(self.heads))
        if unknown:
            raise ValueError(f"loss_weights name unknown heads {unknown}; the heads are {list(self.heads)}")
        needs_teacher = [n for n, h in self.heads.items() if h.requirements().teacher and self.loss_weights[n]]
        if needs_teacher and self.teacher is None:
            raise ValueError(f"head(s) {needs_teacher} align with a teacher: set model.teacher (or their loss weight "
                             "to 0)")
        self.return_layers = sorted({i for h in self.heads.values() for i in h.requirements().layers})
        if parts is not None:
            self._load(parts)
        self._ndims = {name: p.ndim for name, p in self.named_parameters()}  # before a strategy flattens them
        if compile_blocks:
            for block in self.encoder.blocks:
                block.compile()
            if self.teacher is not None:
                self.teacher.compile_blocks()
        self._rng_states_to_restore: dict[str, Any] | None = None
        self._rng_states_before_validation: dict[str, Any] | None = None
        self._schedule: tuple[int, int] | None = None

    # ----------------------------------------------------------------------------------------------- loading
    def _load(self, parts: CheckpointParts) -> None:
        """Load the encoder strictly and hand the rest to the heads; log what was dropped or left fresh."""
        state = dict(parts.encoder)
        target = self.encoder.state_dict()
        dropped = list(parts.dropped)
        for key in [k for k in state if k not in target and (k.startswith("norm.") or k == "pos_embed")]:
            dropped.append("encoder." + key)  # a stage-1 norm unused by a classifier, a table the model computes
            del state[key]
        check_fit(state, target, "the encoder", parts.family, prefix="encoder.")
        self.encoder.load_state_dict(state, strict=True)
        used: set[str] = set()
        fresh: list[str] = []
        for name, head in self.heads.items():
            taken, initialised = head.load_state(parts)
            used |= taken
            fresh += [f"heads.{name}.{k}" for k in initialised]
        unused = sorted(set(parts.rest) - used)
        logger.info(f"loaded {parts.family} checkpoint: encoder strict; dropped by design {key_groups(dropped)}; "
                    f"not used by these heads {key_groups(unused)}; heads initialised fresh {key_groups(fresh)}")

    # ----------------------------------------------------------------------------------------------- forward
    def encode(self, video: Tensor, train: bool) -> EncoderStep:
        """One encoder pass: masked by the teacher in training when a head needs its targets, else whole.

        Args:
            video: ``[B, 3, T, H, W]`` (T = 1: images).
            train: a training step (masks, the step's generator).
        """
        generator = None
        if train:
            seed = (self.seed * 1_000_003 + self.global_step) * 1_009 + self.global_rank  # own stream per rank
            generator = torch.Generator(video.device).manual_seed(seed)
        mask = targets = None
        if train and self.teacher is not None and any(
                head.requirements().teacher and self.loss_weights[name] for name, head in self.heads.items()):
            with torch.no_grad():
                hidden = self.teacher.encode(video)
                frames = video.shape[2]
                ratio = self.masking.image_ratio if frames == 1 else self.masking.video_ratio
                mask = attention_mask(hidden.cls_attention.float(), frames, ratio, generator)
                targets = self.teacher.project(hidden, mask).to(video.dtype)  # visible tokens only
                del hidden
        output = self.encoder(video, mask, self.return_layers)
        return EncoderStep(output, dict(zip(self.return_layers, output.layers, strict=True)), mask, targets,
                           generator)

    def forward(self, video: Tensor) -> EncoderStep:
        """The encoder on every token of ``video [B, 3, T, H, W]``."""
        return self.encode(video, train=False)

    def setup(self, stage: str) -> None:
        """Hand the trainer's data module to every head (``Head.setup_data``)."""
        data = None if self._trainer is None else getattr(self._trainer, "datamodule", None)
        for head in self.heads.values():
            head.setup_data(data)

    # ---------------------------------------------------------------------------------------------- training
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Weighted sum of every head's losses on one batch."""
        for head in self.heads.values():
            head.on_train_step_start()
            batch = head.transform_batch(batch)
        step = self.encode(batch["video"], train=True)
        size = batch["video"].shape[0]
        total = torch.zeros((), device=self.device)
        logs: dict[str, Tensor] = {}
        for name, head in self.heads.items():
            if not self.loss_weights[name]:
                continue
            losses = head.losses(step, batch)
            weighted = self.loss_weights[name] * sum(losses.values())
            total = total + weighted
            logs |= {f"train/{name}/{key}": value.detach() for key, value in losses.items()}
            logs |= {f"train/{name}/{key}": value for key, value in head.train_logs().items()}
        self.log("train/loss", total, prog_bar=True, batch_size=size)
        self.log_dict(logs, batch_size=size)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[-1]["lr"], batch_size=size)
        if step.mask is not None:
            self.log("train/visible_tokens", (~step.mask).sum(1).float().mean(), batch_size=size)
        return total

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        norms = grad_norm(self, norm_type=2)
        if "grad_2.0_norm_total" in norms:
            self.log("train/grad_norm", norms["grad_2.0_norm_total"])

    # -------------------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: Batch, stage: str) -> None:
        step = self.encode(batch["video"], train=False)
        for name, head in self.heads.items():
            values = head.eval_step(step, batch, stage)
            if values:
                self.log_dict({f"{stage}/{name}/{k}": v for k, v in values.items()}, sync_dist=True,
                              batch_size=batch["video"].shape[0])

    def _eval_epoch_end(self, stage: str) -> None:
        world = self.trainer.world_size
        context = EvalContext(
            stage, self.global_rank, world, gather=lambda t: self.all_gather(t).reshape(world, *t.shape),
            reduce=lambda t, op: self.trainer.strategy.reduce(t, reduce_op=op),
            datamodule=getattr(self.trainer, "datamodule", None), device=self.device,
            is_global_zero=self.trainer.is_global_zero)
        for name, head in self.heads.items():
            metrics = head.eval_epoch_end(context)
            self.log_dict({f"{stage}/{name}/{k}": float(v) if not isinstance(v, Tensor) else v
                           for k, v in metrics.items()})

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_start(self) -> None:
        """Keep the training randomness out of validation's reach inside a fit: its data loading may draw from the
        global generators, and a run resumed from a checkpoint saved just before it must continue as if it ran."""
        if self.trainer.state.fn == TrainerFn.FITTING:
            self._rng_states_before_validation = collect_rng_states()

    def on_validation_end(self) -> None:
        if self._rng_states_before_validation is not None:
            set_rng_states(self._rng_states_before_validation)
            self._rng_states_before_validation = None

    def on_validation_epoch_start(self) -> None:
        for head in self.heads.values():
            head.eval_epoch_start("val")

    def on_test_epoch_start(self) -> None:
        for head in self.heads.values():
            head.eval_epoch_start("test")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:  # the sanity batches are discarded at the next epoch start
            self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: Batch, batch_idx: int) -> Any:
        """The first head's predictions of one batch."""
        step = self.encode(batch["video"], train=False)
        return next(iter(self.heads.values())).predict(step, batch)

    # ----------------------------------------------------------------------------------------- optimisation
    def clips_per_step(self) -> int:
        """Clips per process and optimizer step (before accumulation) from the data module.

        Raises:
            ValueError: the lr is batch-scaled and neither ``data_info`` nor the data module gives it.
        """
        info = self.data_info
        if info is not None and info.clips_per_step:
            return info.clips_per_step
        options = getattr(getattr(self.trainer, "datamodule", None), "hparams", {})
        if "batch_size" in options:
            return options["batch_size"] * options.get("num_sample", 1)
        raise ValueError("the lr is scaled by the batch: give data_info.clips_per_step (the CLI links it from the "
                         "data module) or set optimizer.batch_scaled false")

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over the encoder's layer-decay groups and the heads' groups; warm-up then per-step cosine."""
        config = self.optimizer_config
        scale = 1.0
        if config.batch_scaled:
            scale = self.clips_per_step() * self.trainer.world_size * self.trainer.accumulate_grad_batches / 256
        head_groups = {name: list(head.param_groups()) for name, head in self.heads.items()}
        optimizer = build_optimizer(self.encoder, dict(self.heads.items()), head_groups, config, scale, self._ndims)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: self._multiplier(step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _multiplier(self, step: int) -> float:
        """Fraction of the peak lr at optimizer step ``step`` (1 until ``on_train_start`` knows the steps)."""
        if self._schedule is None:
            return 1.0
        warmup, total = self._schedule
        return schedule_multiplier(step, warmup, total, self.optimizer_config)

    def on_train_start(self) -> None:
        """Fix the warm-up and total steps once the trainer knows them (also on resume) and set the lrs of the
        coming step (asking for the steps in ``configure_optimizers`` would break a mid-epoch resume)."""
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        self._schedule = (round(total * self.optimizer_config.warmup_epochs / epochs), total)
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
                group["lr"] = base * self._multiplier(scheduler.last_epoch)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._rng_states_to_restore is not None:
            set_rng_states(self._rng_states_to_restore)
            self._rng_states_to_restore = None

    # ------------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Leave the teacher out (its name and weights file are recorded), record the heads and random states."""
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(TEACHER_PREFIX)]:
            del state[key]
        teacher = self.teacher_spec
        checkpoint["umt_teacher"] = None if teacher is None else {"name": teacher.name, "weights": teacher.weights}
        checkpoint["umt_heads"] = {name: {"class_path": f"{type(h).__module__}.{type(h).__qualname__}",
                                          "options": h.describe()} for name, h in self.heads.items()}
        checkpoint["umt_rng_states"] = collect_rng_states()
        checkpoint["hyper_parameters"] = plain(dict(checkpoint.get("hyper_parameters", {})))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put this module's teacher weights back (loading stays strict); restore the random states at the first
        training batch."""
        if self.teacher is not None:
            checkpoint["state_dict"].update({TEACHER_PREFIX + k: v for k, v in self.teacher.state_dict().items()})
        self._rng_states_to_restore = checkpoint.get("umt_rng_states")


def typed(cls: type, value: Any) -> Any:
    """``value`` as the dataclass ``cls`` when it is a dict (a checkpoint's plain hyper-parameters), else as is."""
    if not isinstance(value, dict):
        return value
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: _typed_hint(hints[k], v) for k, v in value.items() if k in fields})


def _typed_hint(hint: Any, value: Any) -> Any:
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate) and isinstance(value, dict):
            return typed(candidate, value)
    return tuple(value) if isinstance(value, list) and typing.get_origin(hint) is tuple else value


def plain(value: Any) -> Any:
    """Dataclasses as dicts, tuples as lists, recursively: what a ``weights_only`` checkpoint load accepts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def head_spec(factory: HeadFactory) -> dict[str, Any]:
    """``{"class_path", "init_args"}`` of a head factory (a class, or partials of one), for the checkpoint."""
    options: dict[str, Any] = {}
    layer: Any = factory
    while isinstance(layer, functools.partial):
        options = {**layer.keywords, **options}
        layer = layer.func
    target = factory_target(factory)
    return {"class_path": f"{target.__module__}.{target.__qualname__}", "init_args": plain(options)}


def head_factory(spec: dict[str, Any]) -> HeadFactory:
    """The head factory of a ``head_spec`` (an installed head's name or a class path; the class imported, dict
    options made its dataclasses again)."""
    path = resolve_class_paths({"class_path": spec["class_path"]}, "heads")[0]["class_path"]
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise UsageError(f"head class_path {path!r}: not an installed head nor an importable class ({error}); "
                         "`umt heads` lists the installed ones") from error
    hints = typing.get_type_hints(cls.__init__)
    options = {k: _typed_hint(hints.get(k, Any), v) for k, v in spec.get("init_args", {}).items()}
    return functools.partial(cls, **options)


def _head_name(factory: HeadFactory, taken: Mapping[str, Any]) -> str:
    """A head's name: its entry-point name when registered, else its class name in snake case; ``_2`` etc. for
    repeats."""
    base = head_name(factory)
    name, count = base, 2
    while name in taken:
        name, count = f"{base}_{count}", count + 1
    return name


def _xavier_linear(module: nn.Module) -> None:
    """Official pre-training init of the student: Linear xavier-uniform with zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


__all__ = ["UMTModule", "_init_weights"]
