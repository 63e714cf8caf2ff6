"""glocal.tasks: heads, losses, metrics, post-processing, test-time augmentation, and the one task
model that glues adapter + backbone + head."""
from .heads import ClsHead, UNetHead
from .losses import CrossEntropyLoss
from .metrics import Accuracy, IoUMetric
from .model import Classifier, TaskModel
from .postprocess import ClassifyPost, SegmentPost
from .tta import FlipTTA, MultiViewTTA

__all__ = ["TaskModel", "Classifier", "ClsHead", "UNetHead", "CrossEntropyLoss", "Accuracy", "IoUMetric",
           "ClassifyPost", "SegmentPost", "FlipTTA", "MultiViewTTA"]
