"""The head contract: what a task head receives from ``umt.UMTModule`` and what it gives back.

A head is an ``nn.Module`` built by a factory that ``UMTModule`` calls with a ``HeadContext`` (what only the
module knows: the encoder's sizes, the teacher's width, what the data module says). Recipes name the factory
by entry-point name or class path with its options; the class itself is the factory when its first parameter
is ``context``. Per batch the module runs teacher -> mask -> encoder once and hands the same ``EncoderStep`` to
every head. Every hook but ``losses`` has a default, so a head overrides only what it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from umt.checkpoints import CheckpointError, CheckpointParts
from umt.models.config import ModelConfig
from umt.models.vit import EncoderOutput

if TYPE_CHECKING:
    from torchmetrics import MetricCollection  # imported by the heads that report metrics

Batch = dict[str, Any]
"""A batch dict: ``{"video": [B, 3, T, H, W], "label" | "caption" | ...: ..., "index": [B]}``."""


@dataclass(frozen=True)
class DataInfo:
    """What the data module states that heads and the optimizer need (linked by the CLI, never repeated).

    Attributes:
        num_classes: classes of a labelled dataset, or None.
        clips_per_step: clips per process and optimizer step before accumulation (``batch_size *
            num_sample``: repeated clips count), or None when the data module does not say.
        class_names: names of the classes in label order, or None.
        num_frames: frames T of the clips it gives, or None (the encoder's input when the recipe leaves it out).
        img_size: side in pixels of the clips it gives, or None (likewise).
    """

    num_classes: int | None = None
    clips_per_step: int | None = None
    class_names: tuple[str, ...] | None = None
    num_frames: int | None = None
    img_size: int | None = None


@dataclass(frozen=True)
class HeadContext:
    """What a head factory receives.

    Attributes:
        name: the head's name in the module (logs ``{stage}/{name}/...``, checkpoint keys ``heads.{name}.*``).
        embed_dim: encoder width C.
        depth: encoder blocks.
        num_frames: input frames T of the training videos.
        tubelet_size: frames per token.
        grid: token grid ``(h, w)`` of one frame.
        teacher_dim: the teacher's feature width D, or None without a teacher.
        teacher_layers: K, the teacher layers returned, or None without a teacher.
        data: what the data module states.
    """

    name: str
    embed_dim: int
    depth: int
    num_frames: int
    tubelet_size: int
    grid: tuple[int, int]
    teacher_dim: int | None = None
    teacher_layers: int | None = None
    data: DataInfo = DataInfo()

    @classmethod
    def from_config(cls, config: ModelConfig, name: str = "head", data: DataInfo = DataInfo()) -> HeadContext:
        """The context of a head over an encoder built from ``config`` (no teacher)."""
        return cls(name, config.embed_dim, config.depth, config.num_frames, config.tubelet_size, config.grid,
                   data=data)

    @property
    def num_tokens(self) -> int:
        """Token positions ``T/tubelet * h * w`` of a training video."""
        return self.num_frames // self.tubelet_size * self.grid[0] * self.grid[1]


@dataclass(frozen=True)
class Requirements:
    """What a head needs from the encoder pass of a training batch.

    Attributes:
        layers: encoder blocks (0-based) whose outputs the head reads from ``EncoderStep.layers``.
        teacher: the head uses the teacher's targets; the module then masks the student's input with the
            teacher's attention (every head then sees the masked tokens).
    """

    layers: tuple[int, ...] = ()
    teacher: bool = False


@dataclass
class EncoderStep:
    """One encoder pass over a batch, shared by every head.

    Attributes:
        output: tokens ``[B, N_vis, C]`` after the final norm and the grid; ``output.layers`` in ascending block
            order of ``layers``.
        layers: ``{block: [B, N_vis, C]}`` of every block some head asked for.
        mask: bool ``[B, N]``, True = hidden from the student; None when the encoder saw every token.
        targets: the teacher's K layers at the visible positions ``[K, B, N_vis, D]``, or None.
        generator: random source of this step (seeded by the module's seed and the global step), for masks,
            negatives and corruption drawn by heads.
    """

    output: EncoderOutput
    layers: dict[int, Tensor] = field(default_factory=dict)
    mask: Tensor | None = None
    targets: Tensor | None = None
    generator: torch.Generator | None = None

    @property
    def tokens(self) -> Tensor:
        """Last-block tokens ``[B, N_vis, C]``."""
        return self.output.tokens


@dataclass
class EvalContext:
    """What a head needs at the end of an evaluation epoch.

    Attributes:
        stage: ``"val"`` or ``"test"``.
        rank: this process's rank; world_size: processes.
        gather: ``tensor [*S] -> [world_size, *S]`` (every process's tensor, rank order).
        reduce: ``(tensor, "sum" | "max") -> tensor`` over processes.
        datamodule: the trainer's data module (or None), e.g. for whole-split retrieval texts.
        device: where the module runs.
        is_global_zero: whether this process writes files.
    """

    stage: str
    rank: int
    world_size: int
    gather: Callable[[Tensor], Tensor]
    reduce: Callable[[Tensor, str], Tensor]
    datamodule: Any
    device: torch.device
    is_global_zero: bool = True


@dataclass
class ParamGroup:
    """Parameters a head wants optimised with their own lr factor (on top of the module's schedule).

    Attributes:
        params: the parameters (must belong to the head).
        lr_scale: factor on the module's lr.
    """

    params: list[nn.Parameter]
    lr_scale: float = 1.0


class Head(nn.Module):
    """Base class of task heads (see the module docstring). Subclasses take ``context: HeadContext`` first."""

    def __init__(self, context: HeadContext) -> None:
        super().__init__()
        self.context = context

    @property
    def name(self) -> str:
        """The head's name in the module."""
        return self.context.name

    def requirements(self) -> Requirements:
        """What the head needs from the encoder pass (default: the last-block tokens only)."""
        return Requirements()

    def losses(self, step: EncoderStep, batch: Batch) -> dict[str, Tensor]:
        """Named training losses of one batch (summed, each times the head's loss weight, by the module)."""
        raise NotImplementedError(f"{type(self).__name__} does not train; give it a loss weight of 0")

    def transform_batch(self, batch: Batch) -> Batch:
        """Change a training batch before the encoder pass (e.g. mixup); default: unchanged."""
        return batch

    def setup_data(self, datamodule: Any) -> None:
        """Called once the trainer's data module (or None) is set up, e.g. to read a closed answer list."""

    def on_train_step_start(self) -> None:
        """Called before the encoder pass of every training batch (e.g. clamp a temperature)."""

    def train_logs(self) -> dict[str, Tensor]:
        """Extra values to log each training step (``train/{name}/{key}``)."""
        return {}

    def eval_epoch_start(self, stage: str) -> None:
        """Forget what earlier evaluation batches left (e.g. the sanity-check batches)."""

    def eval_step(self, step: EncoderStep, batch: Batch, stage: str) -> dict[str, Tensor]:
        """Update the head's state on one evaluation batch (encoder on every token); return values to log per
        batch (averaged over the epoch by Lightning)."""
        return {}

    def eval_epoch_end(self, context: EvalContext) -> dict[str, Tensor | float]:
        """Metrics over the whole split (``{stage}/{name}/{key}``), computed over every process."""
        return {}

    def predict(self, step: EncoderStep, batch: Batch) -> Any:
        """What ``predict_step`` returns for a batch (default: the pooled tokens ``[B, C]``)."""
        return step.tokens.mean(1)

    def param_groups(self) -> Sequence[ParamGroup]:
        """Parameter groups with their own lr factor; the head's other parameters get the module's lr."""
        return ()

    def load_state(self, parts: CheckpointParts) -> tuple[set[str], list[str]]:
        """Take the head's part of a checkpoint (``parts.rest`` under this library's names, ``parts.raw`` as in
        the file; a ``UMTModule`` checkpoint has the head under ``heads.{name}.*``).

        Returns:
            the keys of ``parts.rest`` used, and the head's own keys left at their initial values (reported).
        """
        return set(), []

    def describe(self) -> dict[str, Any]:
        """Plain options recorded in checkpoints for tools that read the head without the recipe."""
        return {}

    def metrics(self, stage: str) -> MetricCollection | None:
        """The torchmetrics the head reports in ``stage`` (None: none)."""
        return None


HeadFactory = Callable[[HeadContext], Head]
"""A head class (or any callable) taking the ``HeadContext`` first; recipes give its other options."""


def load_module_part(head: nn.Module, parts: CheckpointParts, name: str) -> tuple[set[str], list[str]] | None:
    """Load ``heads.{name}.*`` of a ``UMTModule`` checkpoint into ``head`` strictly; None for other families.

    Raises:
        CheckpointError: the checkpoint has no such head, or its keys or shapes differ.
    """
    if parts.family != "module":
        return None
    prefix = f"heads.{name}."
    state = {k.removeprefix(prefix): v for k, v in parts.rest.items() if k.startswith(prefix)}
    if not state:
        return set(), list(head.state_dict())
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"the checkpoint's head {name!r} does not fit: {error}") from error
    return {prefix + k for k in state}, []
