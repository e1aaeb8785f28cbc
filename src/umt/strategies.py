"""Sharded training of ``UMTModule``: Lightning's FSDP with one unit per encoder block and the teacher left whole."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from umt.models.vit import Block


class UMTFSDPStrategy(FSDPStrategy):
    """``FSDPStrategy`` for ``UMTModule``: every encoder ``Block`` its own FSDP unit (``auto_wrap_policy``), the
    rest (patch embedding, final norm, heads) in the root unit, and the frozen teacher out of FSDP
    (``ignored_modules``): whole on every rank, never sharded, gathered or in the optimizer state. Activation
    checkpointing is the encoder's ``checkpoint_blocks`` option. ``UMTModule`` records its parameters' shapes before
    wrapping, so the optimizer's weight-decay groups are those of one process. Every ``FSDPStrategy`` option passes
    through (``sharding_strategy``, ``state_dict_type``, ``cpu_offload``, ...). FSDP needs CUDA (not CPU).

    Args:
        wrap_blocks: give each encoder block its own FSDP unit (False: the whole module is one unit).
        kwargs: ``lightning.pytorch.strategies.FSDPStrategy`` options.
    """

    def __init__(self, wrap_blocks: bool = True, **kwargs: Any) -> None:
        if wrap_blocks:
            kwargs.setdefault("auto_wrap_policy", {Block})
        super().__init__(**kwargs)

    def _setup_model(self, model: nn.Module) -> nn.Module:
        teacher = getattr(model, "teacher", None)
        if isinstance(teacher, nn.Module):
            self.kwargs["ignored_modules"] = [teacher]
            teacher.to(self.root_device)  # FSDP moves only what it manages
        return super()._setup_model(model)
