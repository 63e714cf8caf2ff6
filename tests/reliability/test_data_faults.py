"""Data faults: a sample that cannot be read is named (dataset, index, file) in glocal's own error,
or skipped and reported with ``on_error='skip'``; samples that cannot be stacked are named with
their shapes and the fix."""
import logging

import numpy as np
import pytest
import torch
from mmengine.optim import OptimWrapper
from PIL import Image

from glocal.core.errors import ConfigError, DataError
from glocal.core.registry import accepted_args
from glocal.modalities import batch as batch_module
from glocal.modalities.batch import BatchPreprocessor, PadCollate, SkippedSample, stack_collate
from glocal.modalities.dataset import GlocalDataset
from glocal.modalities.image import ImageDataPreprocessor, ImageFolder
from glocal.modalities.registry import DATASETS
from glocal.tasks.api import build_model
from glocal.tasks.engine.data import build_dataloader

PACK = [dict(type="PackInputs")]


def _folder(root, sizes=((8, 8),) * 3, classes=("cat", "dog")):
    """``root/<class>/<i>.png``: one RGB image per size per class, random pixels; the paths."""
    rng = np.random.default_rng(0)
    paths = []
    for c in classes:
        (root / c).mkdir()
        for i, (h, w) in enumerate(sizes):
            path = root / c / f"{i}.png"
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
            paths.append(str(path))
    return paths


def _truncate(path, keep=0.5):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:int(len(data) * keep)])


def _capture_log(monkeypatch):
    logged = []
    monkeypatch.setattr(batch_module, "print_log", lambda msg, **kw: logged.append((msg, kw.get("level"))))
    return logged


# ------------------------------------------------------------------------------------------------
# a corrupt file: named, or skipped
# ------------------------------------------------------------------------------------------------
def test_truncated_png_error_names_the_dataset_index_and_file(tmp_path):
    paths = _folder(tmp_path)
    _truncate(paths[4])
    ds = ImageFolder(str(tmp_path), transforms=PACK)
    assert ds.describe(4) == paths[4]
    assert ds[3]["inputs"].shape == (3, 8, 8)  # its neighbours read fine
    with pytest.raises(DataError) as info:
        ds[4]
    msg = str(info.value)
    assert msg.startswith(f"ImageFolder: sample 4 ({paths[4]}) could not be loaded")
    assert "cannot read image" in msg and "on_error='skip'" in msg
    assert info.value.__cause__ is not None  # chained from PIL's error


def test_errors_of_a_dataset_without_files_name_class_and_index():
    class Flaky(GlocalDataset):
        def __len__(self):
            return 4

        def load(self, index):
            if index == 2:
                raise KeyError("no such record")
            return dict(inputs=torch.zeros(2), label=index)

    with pytest.raises(DataError, match=r"^Flaky: sample 2 could not be loaded: KeyError: 'no such record'") as info:
        Flaky()[2]
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(IndexError):  # out of range stays an IndexError (iteration relies on it)
        Flaky()[4]
    skipped = Flaky(on_error="skip")[2]
    assert skipped == SkippedSample(2, None, "KeyError: 'no such record'")


def test_failures_in_the_transforms_are_named_too(tmp_path):
    paths = _folder(tmp_path)
    ds = ImageFolder(str(tmp_path), transforms=[dict(type="RandomCrop", size=16), *PACK])
    with pytest.raises(DataError, match=rf"ImageFolder: sample 0 \({paths[0]}\).*smaller than the crop"):
        ds[0]


def test_skip_policy_keeps_training_and_reports_every_skipped_sample(tmp_path, monkeypatch):
    paths = _folder(tmp_path)
    _truncate(paths[1])
    _truncate(paths[4], keep=0.1)
    loader = build_dataloader(dict(batch_size=3, dataset=dict(type="ImageFolder", root=str(tmp_path),
                                                               transforms=PACK, on_error="skip")),
                              seed=0, train=False)
    batches = list(loader)
    assert [len(b["inputs"]) for b in batches] == [2, 2]
    (i0, p0, m0), = batches[0]["_skipped"]
    (i1, p1, m1), = batches[1]["_skipped"]
    assert (i0, p0, i1, p1) == (1, paths[1], 4, paths[4])
    assert "cannot read image" in m0 and paths[1] in m0
    assert batches[0]["data_samples"]["path"] == [paths[0], paths[2]]  # targets stay aligned with inputs

    logged = _capture_log(monkeypatch)
    model = build_model(dict(type="TaskModel", adapter=dict(type="PatchStem", in_chans=3, dim=8, patch=4),
                             backbone=dict(type="Backbone", stages=[dict(dim=8, depth=1,
                                                                         blocks=dict(ffn=dict(type="Mlp")))]),
                             head=dict(type="ClsHead", num_classes=2),
                             data_preprocessor=dict(type="ImageDataPreprocessor")))
    seen = []
    model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(sorted(kwargs)), with_kwargs=True)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    for b in batches:
        loss = model.train_step(b, optim)["loss"]
        assert torch.isfinite(loss)
    assert seen and all("_skipped" not in keys for keys in seen)  # never reaches the model
    assert model.data_preprocessor.skipped == [(1, paths[1], m0), (4, paths[4], m1)]
    assert [level for _, level in logged] == [logging.WARNING] * 2
    assert logged[0][0].startswith(f"skipped sample 1 ({paths[1]}): ") and "cannot read image" in logged[0][0]
    assert logged[1][0].startswith(f"skipped sample 4 ({paths[4]}): ")


def test_batch_preprocessor_drops_and_counts_skipped_samples(monkeypatch):
    logged = _capture_log(monkeypatch)
    samples = [dict(inputs=torch.ones(2)), SkippedSample(3, "x.bin", "bad header"), dict(inputs=torch.zeros(2))]
    batch = stack_collate(samples)
    assert batch["_skipped"] == [(3, "x.bin", "bad header")] and batch["inputs"].shape == (2, 2)
    pre = BatchPreprocessor()
    out = pre(batch)
    assert "_skipped" not in out and "_skipped" in batch  # the loader's batch itself is left alone
    assert pre.skipped == [(3, "x.bin", "bad header")]
    assert logged == [("skipped sample 3 (x.bin): bad header", logging.WARNING)]
    assert "_skipped" not in ImageDataPreprocessor()(stack_collate([samples[0], samples[2]]))
    assert "_skipped" not in stack_collate([samples[0]])  # the key appears only when something was skipped


def test_a_batch_of_skipped_samples_only_is_an_error(tmp_path):
    paths = _folder(tmp_path, sizes=((8, 8),))
    for p in paths:
        _truncate(p)
    ds = ImageFolder(str(tmp_path), transforms=PACK, on_error="skip")
    samples = [ds[0], ds[1]]
    assert all(isinstance(s, SkippedSample) for s in samples)
    with pytest.raises(DataError, match=rf"StackCollate: every sample of this batch failed to load and was skipped "
                                        rf"\(2 of 2\); the first, sample 0 \({paths[0]}\): cannot read image"):
        stack_collate(samples)
    with pytest.raises(DataError, match=rf"PadCollate: every sample .* sample 0 \({paths[0]}\)"):
        PadCollate()(samples)


def test_max_skips_bounds_the_skipping(tmp_path):
    paths = _folder(tmp_path)
    _truncate(paths[0])
    _truncate(paths[1])
    ds = ImageFolder(str(tmp_path), transforms=PACK, on_error="skip", max_skips=1)
    assert isinstance(ds[0], SkippedSample) and ds.num_skipped == 1
    with pytest.raises(DataError, match=rf"sample 1 \({paths[1]}\) could not be loaded, and max_skips=1 samples"):
        ds[1]


def test_on_error_is_checked_and_every_registered_dataset_takes_it():
    class Empty(GlocalDataset):
        def __len__(self):
            return 0

    with pytest.raises(ConfigError, match="on_error must be 'error' or 'skip'; got 'ignore'"):
        Empty(on_error="ignore")
    with pytest.raises(ConfigError, match="max_skips must be None or an int >= 0"):
        Empty(on_error="skip", max_skips=-1)
    for name in DATASETS.names():
        args = accepted_args(DATASETS.get(name))
        assert {"on_error", "max_skips"} <= set(args), (name, args)


def test_skip_markers_through_pad_collate():
    samples = [dict(inputs=torch.ones(3, 2), label=0), SkippedSample(7, None, "ValueError: bad"),
               dict(inputs=torch.ones(5, 2), label=1), SkippedSample(9, "b.wav", "empty file")]
    batch = PadCollate()(samples)
    assert batch["inputs"].shape == (2, 5, 2) and batch["lengths"].tolist() == [3, 5]
    assert batch["data_samples"]["label"].tolist() == [0, 1]
    assert batch["_skipped"] == [(7, None, "ValueError: bad"), (9, "b.wav", "empty file")]


# ------------------------------------------------------------------------------------------------
# samples that cannot be stacked
# ------------------------------------------------------------------------------------------------
def test_mixed_image_sizes_name_both_files_and_the_fix(tmp_path):
    paths = _folder(tmp_path, sizes=((8, 8), (8, 8), (10, 6)), classes=("cat",))
    ds = ImageFolder(str(tmp_path), transforms=PACK)
    with pytest.raises(DataError) as info:
        stack_collate([ds[i] for i in range(3)])
    msg = str(info.value)
    assert msg.startswith("StackCollate cannot stack 'inputs': the samples have different shapes: ")
    assert f"(3, 8, 8) for {paths[0]}, {paths[1]}; (3, 10, 6) for {paths[2]}" in msg  # the commonest first
    for fix in ("Resize", "CenterCrop", "RandomCrop", "RandomResizedCrop", "collate_fn=dict(type='PadCollate'"):
        assert fix in msg
    resized = ImageFolder(str(tmp_path), transforms=[dict(type="Resize", size=8), *PACK])
    assert stack_collate([resized[i] for i in range(3)])["inputs"].shape == (3, 3, 8, 8)


def test_targets_that_cannot_be_stacked_name_the_samples():
    samples = [dict(inputs=torch.zeros(1, 4, 4), seg=torch.zeros(4, 4, dtype=torch.long), path=f"{i}.png")
               for i in range(3)]
    samples[1]["seg"] = torch.zeros(4, 5, dtype=torch.long)
    with pytest.raises(DataError, match=r"StackCollate cannot stack 'seg': the samples have different shapes: "
                                        r"\(4, 4\) for 0.png, 2.png; \(4, 5\) for 1.png\. .*PadCollate\(seq_keys="
                                        r"\('seg',\)\).*a label map needs the same resize/crop as its image"):
        stack_collate(samples)
    unnamed = [dict(inputs=torch.zeros(2)), dict(inputs=torch.zeros(3))]
    with pytest.raises(DataError, match=r"\(2,\) for sample 0 of the batch; \(3,\) for sample 1 of the batch"):
        stack_collate(unnamed)


def test_samples_with_different_fields_are_named():
    samples = [dict(inputs=torch.zeros(2), label=1, path="a.png"), dict(inputs=torch.zeros(2), path="b.png")]
    with pytest.raises(DataError, match=r"StackCollate: the samples of a batch need the same fields, but b.png "
                                        r"lacks \['label'\]"):
        stack_collate(samples)
    with pytest.raises(DataError, match=r"PadCollate: .* b.png lacks \['label'\]"):
        PadCollate()([dict(s, inputs=torch.zeros(2, 1)) for s in samples])
