"""Images: IDX (Fashion-MNIST), Fashion-MNIST scenes (segmentation) and folder datasets, transforms,
patch/conv stems."""
from .adapter import ConvStem, ImageDataPreprocessor, PatchStem, check_images
from .fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, FashionMNIST, read_idx
from .folder import ImageFolder
from .scenes import FashionMNISTScenes
from .transforms import (CenterCrop, PackInputs, RandomCrop, RandomErasing, RandomFlip, RandomResizedCrop,
                         Resize)

__all__ = ["PatchStem", "ConvStem", "ImageDataPreprocessor", "check_images", "FashionMNIST", "read_idx",
           "FASHION_MNIST_ROOT", "FASHION_MNIST_CLASSES", "FashionMNISTScenes", "ImageFolder", "RandomCrop",
           "RandomFlip", "Resize", "CenterCrop", "RandomResizedCrop", "RandomErasing", "PackInputs"]
