"""Everything glocal.modalities offers to configs, registered explicitly in one place."""
from glocal.core.registry import ADAPTERS, DATASETS, MODELS, TRANSFORMS

from . import image

# --- image ---------------------------------------------------------------------------------------
ADAPTERS.add_all(image.PatchStem, image.ConvStem)
MODELS.add_all(image.ImageDataPreprocessor)
DATASETS.add_all(image.FashionMNIST, image.ImageFolder)
TRANSFORMS.add_all(image.RandomCrop, image.RandomFlip, image.Resize, image.CenterCrop,
                   image.RandomResizedCrop, image.RandomErasing, image.PackInputs)
