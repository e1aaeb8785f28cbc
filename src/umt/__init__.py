"""unmasked-teacher: UMT video foundation models (ICCV 2023) for PyTorch and Lightning."""

from umt.checkpoints import CheckpointError, read_checkpoint
from umt.models.classifier import VideoClassifier
from umt.models.config import ModelConfig, list_models
from umt.models.factory import create_model
from umt.models.vit import EncoderOutput, VideoViT

__all__ = [
    "CheckpointError",
    "EncoderOutput",
    "ModelConfig",
    "VideoClassifier",
    "VideoViT",
    "create_model",
    "list_models",
    "read_checkpoint",
]
__version__ = "0.1.0"
