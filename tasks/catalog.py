"""Everything glocal.tasks offers to configs, registered explicitly in one place."""
from . import heads, losses, metrics, model, postprocess, regression, sequence, tta
from .registry import HEADS, LOSSES, METRICS, MODELS, POSTPROCESSORS, TTAS

MODELS.add_all(model.TaskModel, model.Classifier)
# classification, dense per-element prediction, sequence labelling (CTC), regression
HEADS.add_all(heads.ClsHead, heads.UNetHead, sequence.TokenHead, regression.RegressionHead)
LOSSES.add_all(losses.CrossEntropyLoss, sequence.CTCLoss, regression.RegressionLoss)
METRICS.add_all(metrics.Accuracy, metrics.ROCAUC, metrics.IoUMetric, sequence.ErrorRate, regression.RegressionMetric)
POSTPROCESSORS.add_all(postprocess.ClassifyPost, postprocess.SegmentPost, sequence.CTCGreedyDecoder,
                       regression.RegressionPost)
TTAS.add_all(tta.FlipTTA, tta.MultiViewTTA)
