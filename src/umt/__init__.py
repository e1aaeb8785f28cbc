"""unmasked-teacher: UMT video foundation models (ICCV 2023) for PyTorch and Lightning."""

from importlib import import_module
from typing import Any

from umt.checkpoints import CheckpointError, read_checkpoint
from umt.flop_count import FlopReport, flops
from umt.models.classifier import VideoClassifier
from umt.models.config import ModelConfig, list_models
from umt.models.factory import create_model
from umt.models.vit import EncoderOutput, VideoViT

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

_LAZY = {name: "umt.models.video_text" for name in ("VideoTextConfig", "VideoTextModel", "create_video_text_model")}
_LAZY |= {"UMTModule": "umt.module"}
_LAZY |= {name: "umt.options" for name in ("EncoderConfig", "MaskingConfig", "OptimizerConfig", "TeacherSpec")}
"""Names imported on first use: the video-text model pulls in transformers and the module Lightning, which
video-only inference never needs."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'umt' has no attribute {name!r}")
