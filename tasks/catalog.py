"""Everything glocal.tasks offers to configs, registered explicitly in one place."""
from torch import nn

from glocal.core.registry import HEADS, LOSSES, METRICS, MODELS

from .classification import Classifier
from .heads import ClsHead
from .metrics import Accuracy

MODELS.add_all(Classifier)
HEADS.add_all(ClsHead)
METRICS.add_all(Accuracy)
LOSSES.add_all(nn.CrossEntropyLoss)
