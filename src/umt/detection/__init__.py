"""AVA v2.2 spatio-temporal action detection: the official detector, its checkpoints and the frame-mAP evaluation."""

from umt.detection.boxes import extend_boxes, jitter_boxes, sample_boxes
from umt.detection.checkpoints import create_detector, load_detector_weights, read_detector_checkpoint
from umt.detection.evaluation import evaluate_ava, read_labelmap
from umt.detection.metric import AVAFrameMAP, official_box_coordinates
from umt.detection.model import (
    ActionDetector,
    Proposals,
    RoIHead,
    ava_action_names,
    detection_loss,
    detection_scores,
    detector_config,
)

__all__ = [
    "AVAFrameMAP",
    "ActionDetector",
    "Proposals",
    "RoIHead",
    "ava_action_names",
    "create_detector",
    "detection_loss",
    "detection_scores",
    "detector_config",
    "evaluate_ava",
    "extend_boxes",
    "jitter_boxes",
    "load_detector_weights",
    "official_box_coordinates",
    "read_detector_checkpoint",
    "read_labelmap",
    "sample_boxes",
]
