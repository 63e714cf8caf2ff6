"""Layers import downward only: core < modalities < tasks; one modality never imports another's
decoders. Each check runs in a fresh interpreter and reads ``sys.modules``."""
import json
import subprocess
import sys

import pytest

from glocal.modalities.registry import MODALITY_REGISTRIES
from glocal.tasks.registry import TASK_REGISTRIES

# decoding libraries of the modalities: images use PIL; the others must stay unimported by images
OTHER_DECODERS = ("decord", "open3d", "torchaudio", "torchcodec", "soundfile", "av", "laspy", "rdkit",
                  "torch_geometric", "skvideo")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_core_builds_swin_t_without_upper_layers_mmengine_or_pil():
    mods = _modules_after("import torch, glocal.core\nfrom glocal.core.registry import BACKBONES\n"
                          "b = BACKBONES.build(dict(type='swin_t'))\n"
                          "b(glocal.core.Tokens(torch.randn(1, 49, 96), grid=(7, 7)))")
    assert not {"mmengine", "PIL"} & _top(mods), sorted({"mmengine", "PIL"} & _top(mods))
    upper = sorted(m for m in mods if m.startswith(("glocal.modalities", "glocal.tasks")))
    assert not upper, upper


def test_image_training_path_never_imports_other_modalities_decoders():
    mods = _modules_after(
        "import torch\nfrom glocal.tasks.api import build_model, DATASETS\n"
        "m = build_model(dict(type='Classifier', adapter=dict(type='PatchStem', in_chans=1, dim=16, patch=4),"
        " backbone=dict(type='Backbone', stages=[dict(dim=16, depth=1, blocks=dict(local=dict(type='DepthwiseConv')))]),"
        " head=dict(type='ClsHead', num_classes=3), data_preprocessor=dict(type='ImageDataPreprocessor')))\n"
        "m(torch.randn(1, 1, 28, 28))\n"
        "DATASETS.get('FashionMNIST'); DATASETS.get('ImageFolder')\n"
        "import glocal.tasks.engine")
    assert "glocal.modalities.image" in mods
    leaked = sorted(set(OTHER_DECODERS) & _top(mods))
    assert not leaked, f"the image path imported {leaked}"


def test_modalities_layer_does_not_import_tasks():
    mods = _modules_after("from glocal.modalities.registry import ADAPTERS\nADAPTERS.get('PatchStem')")
    assert not any(m.startswith("glocal.tasks") for m in mods)


@pytest.mark.parametrize("registry", MODALITY_REGISTRIES + TASK_REGISTRIES, ids=lambda r: r.name)
def test_every_catalog_entry_resolves(registry):
    for name in registry.names():
        assert callable(registry.get(name)), f"{registry.name} {name}"
