"""unmasked-teacher: UMT video foundation models (ICCV 2023) for PyTorch and Lightning."""

from importlib import import_module
from typing import Any

__all__ = [
    "CheckpointError",
    "EncoderConfig",
    "EncoderOutput",
    "FlopReport",
    "MaskingConfig",
    "ModelConfig",
    "OptimizerConfig",
    "TeacherSpec",
    "UMTModule",
    "VideoClassifier",
    "VideoTextConfig",
    "VideoTextModel",
    "VideoViT",
    "create_model",
    "create_video_text_model",
    "flops",
    "list_models",
    "read_checkpoint",
]
__version__ = "0.1.0"

_LAZY = {name: "umt.checkpoints" for name in ("CheckpointError", "read_checkpoint")}
_LAZY |= {"VideoClassifier": "umt.models.classifier", "create_model": "umt.models.factory"}
_LAZY |= {name: "umt.models.config" for name in ("ModelConfig", "list_models")}
_LAZY |= {name: "umt.models.vit" for name in ("EncoderOutput", "VideoViT")}
_LAZY |= {name: "umt.models.video_text" for name in ("VideoTextConfig", "VideoTextModel", "create_video_text_model")}
_LAZY |= {"UMTModule": "umt.module"} | {name: "umt.flop_count" for name in ("FlopReport", "flops")}
_LAZY |= {name: "umt.options" for name in ("EncoderConfig", "MaskingConfig", "OptimizerConfig", "TeacherSpec")}
"""Names imported on first use: ``import umt`` (and so the ``umt`` command's help) stays free of torch; the
video-text model pulls in transformers and the module Lightning, which video-only inference never needs."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'umt' has no attribute {name!r}")
