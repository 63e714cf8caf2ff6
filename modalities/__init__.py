"""glocal.modalities: one package per modality (decoding, transforms, datasets, adapter/stem).

Import the modality you need (``glocal.modalities.image``); nothing heavy is imported here.
"""
