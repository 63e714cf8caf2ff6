"""glocal.tasks: heads, losses, metrics and the task models that glue adapter + backbone + head."""
from .classification import Classifier
from .heads import ClsHead
from .metrics import Accuracy

__all__ = ["Classifier", "ClsHead", "Accuracy"]
