import numpy as np
import pytest
import torch
from PIL import Image

from glocal.core import DatasetNotFoundError, InputError
from glocal.modalities.image import ConvStem, ImageDataPreprocessor, ImageFolder, PatchStem


def test_patch_stem_tokens():
    t, undo = PatchStem(3, 16, patch=4)(torch.randn(2, 3, 30, 32))
    assert t.grid == (8, 8) and t.x.shape == (2, 64, 16)
    # the undo goes back to the pixels, cropping the padding the stem added
    pixels = undo.restore(undo.up(t.x))
    assert pixels.grid == (30, 32) and pixels.x.shape == (2, 960, 16)
    assert torch.equal(pixels.grid_view()[:, 4:8, 0:4], t.grid_view()[:, 1:2, 0:1].expand(2, 4, 4, 16))


def test_conv_stem_tokens():
    stem = ConvStem(1, dims=(8, 12), strides=(2, 2), norm_last="LayerNorm")
    t, undo = stem(dict(inputs=torch.randn(2, 1, 27, 28)))  # a batch mapping, as the collate makes
    assert t.grid == (7, 7) and t.x.shape == (2, 49, 12)
    assert undo.restore(undo.up(t.x, "linear")).grid == (27, 28)


@pytest.mark.parametrize("x,match", [
    (torch.randn(3, 28, 28), r"add the batch dim"),
    (torch.randn(2, 1, 28, 28), r"built for 3-channel images but got 1 channels.*in_chans=1"),
    (torch.randn(2, 28, 28, 3), r"built for 3-channel images but got 28.*permuted"),
    (torch.zeros(2, 3, 28, 28, dtype=torch.uint8), "float pixels"),
])
def test_wrong_images_get_clear_errors(x, match):
    with pytest.raises(InputError, match=match):
        PatchStem(3, 16, patch=4)(x)


def test_preprocessor_normalises():
    pre = ImageDataPreprocessor(mean=(0.5,), std=(0.25,))
    out = pre(dict(inputs=torch.full((1, 1, 2, 2), 255, dtype=torch.uint8), data_samples={}))
    assert torch.allclose(out["inputs"], torch.full((1, 1, 2, 2), 2.0))


def test_image_folder(tmp_path):
    for cls, color in (("cat", 10), ("dog", 200)):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.full((6, 5), color + i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = ImageFolder(str(tmp_path), mode="RGB", transforms=[dict(type="PackInputs")])
    assert len(ds) == 4 and ds.metainfo["classes"] == ("cat", "dog")
    s = ds[3]
    assert s["inputs"].shape == (3, 6, 5) and s["label"] == 1 and int(s["inputs"][0, 0, 0]) == 201
    (tmp_path / "dog" / "broken.png").write_bytes(b"garbage")
    ds = ImageFolder(str(tmp_path), transforms=[dict(type="PackInputs")])
    with pytest.raises(InputError, match="cannot read image .*broken.png"):
        ds[4]
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        ImageFolder(str(tmp_path / "missing"))
