"""tools/infer.py: an untrained model of each landed modality's configs run on a user's own files
(images, SMILES, wav, point clouds, mp4) and folders of them, the printed lines and the JSON, and
the errors: per input (missing file, invalid SMILES, truncated video, empty folder) and for the
whole run (no from_file, weights of another model, missing structure). Fashion-MNIST test images
written as PNGs get the probabilities ``tools/test.py --dump`` gives the same images."""
import importlib.util
import json
import pathlib
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from glocal.core.errors import ConfigError, MissingStructureError
from glocal.modalities.audio import KEYWORDS, save_audio
from glocal.modalities.image.fashion_mnist import FASHION_MNIST_CLASSES
from glocal.tasks.checkpoint import CheckpointError
from glocal.tasks.engine import build_model, load_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "tasks" / "configs" / "tiny_fashion_mnist.py"
DEMO = ROOT / "configs" / "image" / "fashion_mnist_demo.py"
SCENES = ROOT / "configs" / "image" / "scenes_unet_local.py"
FREESOLV = ROOT / "configs" / "graph" / "freesolv_gps.py"
SOLUBILITY = ROOT / "configs" / "graph" / "solubility_cls_gps.py"
QM9 = ROOT / "configs" / "graph" / "qm9_gap_gps.py"
KWS = ROOT / "configs" / "audio" / "kws_conformer.py"
CTC = ROOT / "configs" / "audio" / "ctc_conformer.py"
MFM = ROOT / "configs" / "video" / "mfm_local_global.py"


def _tool(name: str = "infer"):
    spec = importlib.util.spec_from_file_location(f"glocal_{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


infer = _tool()


def checkpoint(config, folder: pathlib.Path) -> str:
    """An untrained model's weights as an mmengine-style checkpoint the safe loader reads."""
    path = folder / f"{pathlib.Path(config).stem}.pth"
    torch.save({"meta": {}, "state_dict": build_model(load_config(config)).state_dict()}, path)
    return str(path)


def run(config, ckpt, *inputs, out=None, extra=()):
    """The exit code of one in-process run (its output: capsys, and the JSON at ``out``)."""
    argv = [str(config), ckpt, *map(str, inputs), *extra] + (["--out", str(out)] if out else [])
    return infer.main(argv)


def save_image(path, shape, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def test_image_classifier_top_k_and_a_missing_file(tmp_path, capsys):
    ckpt = checkpoint(TINY, tmp_path)
    small = save_image(tmp_path / "item.png", (28, 28))
    photo = save_image(tmp_path / "photo.png", (40, 30, 3), seed=1)  # RGB, another size: converted and resized
    missing = tmp_path / "missing.png"
    code = run(TINY, ckpt, small, missing, photo, out=tmp_path / "r.json", extra=["--topk", "3"])
    out, err = capsys.readouterr()
    assert code == 2
    lines = out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(small), str(photo)]  # the good inputs still print
    assert re.search(rf"error: {re.escape(str(missing))}: image file not found", err), err
    assert "1 of 3 inputs failed" in err
    assert re.search(r"note: \S*photo\.png is 30x40 pixels .* resized to 28x28", err), err
    records = json.loads((tmp_path / "r.json").read_text())
    assert [r["input"] for r in records] == [str(small), str(missing), str(photo)]
    assert records[1] == dict(input=str(missing), error=f"{missing}: image file not found")
    for r in (records[0], records[2]):
        top = r["topk"]
        assert len(top) == 3 and all(t["name"] in FASHION_MNIST_CLASSES for t in top)
        probs = [t["prob"] for t in top]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert abs(sum(r["scores"]) - 1) < 1e-5 and len(r["scores"]) == 10


# Fashion-MNIST test images of eight classes (9, 2, 1, 6, 4, 5, 7, 3), and the sizes (H, W) they are
# written at, in turn: their own, and upscaled (PIL, bilinear)
PICKED = (0, 1, 2, 4, 6, 8, 9, 13)
SIZES = ((28, 28), (40, 40), (42, 56), (70, 33))


def write_fashion_pngs(folder: pathlib.Path) -> list[pathlib.Path]:
    """The :data:`PICKED` test images as ``folder/<label>_<class>/<index>.png`` (a class's folder
    name cannot hold the ``/`` of ``T-shirt/top``), at the :data:`SIZES` in turn."""
    from glocal.modalities.image import FashionMNIST

    test = FashionMNIST(split="test", limit=max(PICKED) + 1)
    paths = []
    for n, i in enumerate(PICKED):
        label = int(test.labels[i])
        path = folder / f"{label}_{FASHION_MNIST_CLASSES[label].replace('/', '_')}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        H, W = SIZES[n % len(SIZES)]
        Image.fromarray(test.images[i]).resize((W, H), Image.BILINEAR).save(path)
        paths.append(path)
    return paths


def dump(config, ckpt: str, folder: pathlib.Path, name: str, *options) -> list[dict]:
    """The records of ``tools/test.py CONFIG CKPT --dump`` (in-process)."""
    out = folder / f"{name}.json"
    argv = [str(config), ckpt, "--dump", str(out), "--work-dir", str(folder / name), "--progress", "off"]
    assert _tool("test").main(argv + (["--cfg-options", *options] if options else [])) == 0
    return json.loads(out.read_text())


def assert_same_predictions(infer_records: list[dict], test_records: list[dict]) -> None:
    """The same top-1 class per image, and probabilities within 1e-5."""
    assert len(infer_records) == len(test_records) > 0
    for a, b in zip(infer_records, test_records):
        assert a["topk"][0]["index"] == b["pred_label"], (a["input"], b)
        assert np.abs(np.array(a["scores"]) - np.array(b["pred_scores"])).max() < 1e-5, (a["input"], b["index"])


def test_fashion_mnist_pngs_and_a_folder_of_mixed_sizes_match_the_test_tool(tmp_path, capsys):
    """Fashion-MNIST test images written as PNGs (28x28 and upscaled) in a class-per-subfolder tree:
    tools/infer.py on the folder and on single files gives the probabilities tools/test.py --dump
    gives the same files read by ImageFolder (resized to 28x28 in its test transforms, as the
    demo's FashionMNIST.from_file resizes them), and a 28x28 PNG those of the test image itself
    through the demo's own test dataset (FashionMNIST from the IDX files)."""
    torch.manual_seed(2)  # untrained (the two paths to the model are compared), but not one class for all
    ckpt = checkpoint(DEMO, tmp_path)
    folder = tmp_path / "folder"
    pngs = write_fashion_pngs(folder)
    (folder / "README.md").write_text("not an image: a folder input keeps only image files\n")

    cfg = load_config(DEMO)  # the demo with an ImageFolder of the PNGs as its test set
    cfg.test_dataloader = dict(batch_size=3, num_workers=0, sampler=dict(type="SeededSampler", shuffle=False),
                               dataset=dict(type="ImageFolder", root=str(folder), mode="L",
                                            transforms=[dict(type="Resize", size=28), dict(type="PackInputs")]))
    cfg.dump(str(tmp_path / "folder_test.py"))
    on_folder = dump(tmp_path / "folder_test.py", ckpt, tmp_path, "folder_run")  # its work dir: not the image folder
    assert [r["path"] for r in on_folder] == [str(p) for p in sorted(pngs)]  # the tree's order, files named
    assert [r["index"] for r in on_folder] == list(range(len(pngs)))
    assert len({r["pred_label"] for r in on_folder}) > 1  # the top-1 comparison below is not trivial
    classes = sorted({p.parent.name for p in pngs})  # ImageFolder's: the subfolders, sorted
    assert [r["gt_label"] for r in on_folder] == [classes.index(pathlib.Path(r["path"]).parent.name) for r in on_folder]

    for config in (tmp_path / "folder_test.py", DEMO):  # ImageFolder.from_file + Resize; FashionMNIST.from_file
        assert run(config, ckpt, folder, out=tmp_path / "r.json") == 0  # one input: the folder
        records = json.loads((tmp_path / "r.json").read_text())
        assert [r["input"] for r in records] == [r["path"] for r in on_folder]
        assert_same_predictions(records, on_folder)
    wide = next(p for p in pngs if Image.open(p).size == (33, 70))
    assert run(tmp_path / "folder_test.py", ckpt, wide, out=tmp_path / "one.json") == 0  # one file
    assert_same_predictions(json.loads((tmp_path / "one.json").read_text()),
                            [r for r in on_folder if r["path"] == str(wide)])

    # a Fashion-MNIST test image written as a 28x28 PNG: as the test image through the demo's test set
    on_test_set = dump(DEMO, ckpt, tmp_path, "test_set", f"test_dataloader.dataset.limit={max(PICKED) + 1}")
    own_size = [p for p in pngs if Image.open(p).size == (28, 28)]
    assert run(DEMO, ckpt, *own_size, out=tmp_path / "own.json") == 0
    assert_same_predictions(json.loads((tmp_path / "own.json").read_text()),
                            [on_test_set[int(p.stem)] for p in own_size])
    assert [on_test_set[int(p.stem)]["index"] for p in own_size] == [int(p.stem) for p in own_size]
    capsys.readouterr()


def test_folder_inputs_keep_the_dataset_files_and_an_empty_folder_is_an_input_error(tmp_path, capsys):
    ckpt = checkpoint(TINY, tmp_path)
    photos, empty = tmp_path / "photos", tmp_path / "empty"
    (photos / "b").mkdir(parents=True)
    (photos / ".thumbs").mkdir()
    empty.mkdir()
    save_image(photos / "b" / "2.PNG", (28, 28))
    save_image(photos / "1.jpg", (30, 20, 3), seed=1)
    save_image(photos / ".thumbs" / "1.png", (28, 28))  # hidden: left out
    (photos / "notes.txt").write_text("not an image\n")  # not a list here: a file the dataset does not read
    (empty / "notes.md").write_text("nothing to classify\n")
    code = run(TINY, ckpt, photos, empty, out=tmp_path / "r.json")
    out, err = capsys.readouterr()
    assert code == 2
    assert [line.split(": ")[0] for line in out.splitlines()] == [str(photos / "1.jpg"), str(photos / "b" / "2.PNG")]
    assert re.search(rf"error: {re.escape(str(empty))}: folder with no input files \(looked for files ending in "
                     rf"\.png, \.jpg", err), err
    assert "1 of 3 inputs failed" in err
    assert [r["input"] for r in json.loads((tmp_path / "r.json").read_text())] == \
        [str(photos / "1.jpg"), str(photos / "b" / "2.PNG"), str(empty)]


def test_segmentation_writes_label_maps_at_the_input_size(tmp_path, capsys):
    ckpt = checkpoint(SCENES, tmp_path)
    canvas = save_image(tmp_path / "scene.png", (64, 64))
    other = save_image(tmp_path / "wide.png", (48, 80), seed=2)  # resized to the 64x64 canvas and back
    code = run(SCENES, ckpt, canvas, other, out=tmp_path / "r.json", extra=["--out-dir", str(tmp_path / "seg")])
    out, _ = capsys.readouterr()
    assert code == 0, out
    records = json.loads((tmp_path / "r.json").read_text())
    for r, (H, W) in zip(records, [(64, 64), (48, 80)]):
        png = pathlib.Path(r["png"])
        assert png.parent == tmp_path / "seg" and png.is_file()
        labels = np.asarray(Image.open(png))
        assert labels.shape == (H, W) == tuple(r["shape"])
        assert labels.max() < 11  # background + 10 item classes
        assert abs(sum(r["histogram"].values()) - 1) < 1e-6
        assert f"label map {W}x{H} -> {png}" in out


def test_graph_regression_smiles_and_a_list_with_an_invalid_one(tmp_path, capsys):
    ckpt = checkpoint(FREESOLV, tmp_path)
    listed = tmp_path / "molecules.txt"
    listed.write_text("# two molecules and a broken one\nc1ccccc1O\n\nC1CC(\nCC(=O)O\n")
    code = run(FREESOLV, ckpt, "CCO", listed, out=tmp_path / "r.json")
    out, err = capsys.readouterr()
    assert code == 2
    lines = out.splitlines()
    assert [line.split(": ")[0] for line in lines] == ["CCO", "c1ccccc1O", "CC(=O)O"]
    assert all(re.fullmatch(r"\S+: dG_hyd_kcal_mol = -?[\d.e+-]+ kcal/mol", line) for line in lines), lines
    assert "error: molecule C1CC( has an invalid SMILES string 'C1CC('" in err and "1 of 4 inputs failed" in err
    records = json.loads((tmp_path / "r.json").read_text())
    assert set(records[0]["values"]) == {"dG_hyd_kcal_mol"} and records[0]["units"] == {"dG_hyd_kcal_mol": "kcal/mol"}
    assert "invalid SMILES" in records[2]["error"]


def test_graph_classification(tmp_path, capsys):
    ckpt = checkpoint(SOLUBILITY, tmp_path)
    assert run(SOLUBILITY, ckpt, "CCO", "O", out=tmp_path / "r.json") == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    for r in json.loads((tmp_path / "r.json").read_text()):
        assert sorted(t["name"] for t in r["topk"]) == ["high", "low", "medium"]  # topk 5 > 3 classes
        assert abs(sum(t["prob"] for t in r["topk"]) - 1) < 1e-5


def test_qm9_from_smiles_has_hydrogens_and_no_positions_and_a_model_needing_them_is_refused():
    reader = infer.Reader.from_config(load_config(QM9))
    sample, notes = reader.sample("CCO")
    assert sample["inputs"].shape[0] == 9 and "pos" not in sample and "rwse" in sample and not notes

    class NeedsPositions(torch.nn.Module):
        def data_preprocessor(self, batch, training):
            return batch

        def predict_scores(self, batch):
            raise MissingStructureError("GeometricMixer needs Tokens.pos, which these tokens do not carry.")

        postprocess = None

    item = infer.Item("CCO", sample=sample)
    with pytest.raises(ConfigError, match=r"needs Tokens\.pos.*QM9\.from_file: .*no 3D coordinates"):
        infer.run_items(NeedsPositions(), reader, [item], str(QM9))


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wavs")
    t = torch.arange(8000) / 16000  # 0.5 s
    save_audio(folder / "tone.wav", 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.02 * torch.randn(8000), 16000)
    save_audio(folder / "noise.wav", 0.1 * torch.randn(2, 8820), 22050)  # stereo at 22.05 kHz: mixed, resampled
    return folder / "tone.wav", folder / "noise.wav"


def test_keyword_spotting(tmp_path, wavs, capsys):
    ckpt = checkpoint(KWS, tmp_path)
    assert run(KWS, ckpt, *wavs, out=tmp_path / "r.json", extra=["--topk", "2"]) == 0
    assert [line.split(": ")[0] for line in capsys.readouterr().out.splitlines()] == [str(w) for w in wavs]
    for r in json.loads((tmp_path / "r.json").read_text()):
        assert len(r["topk"]) == 2 and all(t["name"] in KEYWORDS for t in r["topk"])
        assert sum(t["prob"] for t in r["topk"]) <= 1 + 1e-6


def test_ctc_transcripts(tmp_path, wavs, capsys):
    ckpt = checkpoint(CTC, tmp_path)
    assert run(CTC, ckpt, *wavs, out=tmp_path / "r.json") == 0  # EncodeText (targets only) is left out
    lines = capsys.readouterr().out.splitlines()
    vocab = set(load_config(CTC).vocab)
    for line, r in zip(lines, json.loads((tmp_path / "r.json").read_text())):
        assert isinstance(r["text"], str) and set(r["text"]) <= vocab
        assert line == f"{r['input']}: {json.dumps(r['text'])}"
        assert all(0 < i < len(vocab) + 1 for i in r["ids"])


def test_a_dataset_without_from_file_is_refused():
    with pytest.raises(ConfigError, match=r"dataset class LongRangeNodes .* has no from_file\(\): inference on "
                                          r"files is not supported for it"):
        infer.main([str(ROOT / "configs" / "graph" / "longrange_gps.py"), "unused.pth", "x"])


def test_weights_of_another_model_are_refused(tmp_path):
    other = load_config(TINY)
    other.model.head.num_classes = 7
    path = tmp_path / "other.pth"
    torch.save({"meta": {}, "state_dict": build_model(other).state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"weights in \S*other\.pth do not fit TaskModel"):
        infer.main([str(TINY), str(path), "x.png"])


def test_point_clouds_shape_class_and_per_point_labels(tmp_path, capsys):
    """A shape classifier on a .ply and a .xyz cloud; a LiDAR segmenter writes a .ply with a label per
    point of the file, read back by glocal's reader."""
    from glocal.modalities.points import read_points, write_points

    rng = np.random.default_rng(0)
    sphere = rng.normal(size=(700, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    write_points(tmp_path / "ball.ply", sphere)
    write_points(tmp_path / "ball.xyz", sphere[:300] * 3)
    shapes = ROOT / "configs" / "points" / "shapes_local.py"
    code = run(shapes, checkpoint(shapes, tmp_path), tmp_path / "ball.ply", tmp_path / "ball.xyz",
               out=tmp_path / "cls.json", extra=["--topk", "2"])
    out, _ = capsys.readouterr()
    assert code == 0, out
    records = json.loads((tmp_path / "cls.json").read_text())
    from glocal.modalities.points import SHAPE_CLASSES

    assert len(records) == 2 and all(len(r["topk"]) == 2 for r in records), records
    assert all(t["name"] in SHAPE_CLASSES for r in records for t in r["topk"])

    tile = np.concatenate([rng.uniform(0, 30, size=(900, 2)), rng.uniform(0, 2, size=(900, 1))], 1)
    write_points(tmp_path / "tile.ply", tile, colors=rng.uniform(size=(900, 3)))
    lidar = ROOT / "configs" / "points" / "lidar_b9_local.py"
    code = run(lidar, checkpoint(lidar, tmp_path), tmp_path / "tile.ply", out=tmp_path / "seg.json",
               extra=["--out-dir", str(tmp_path / "seg")])
    out, _ = capsys.readouterr()
    assert code == 0, out
    record, = json.loads((tmp_path / "seg.json").read_text())
    written = read_points(record["ply"])
    assert record["points"] == 900 and written["coords"].shape == (900, 3)
    assert written["labels"].min() >= 0 and written["labels"].max() < 3
    assert f"900 points labelled -> {record['ply']}" in out


def test_video_clip_classes_from_mp4s_and_bad_files_named(tmp_path, capsys):
    """The moving Fashion-MNIST model on mp4s written with write_video: a 16-frame 64x64 clip like the
    training ones and a 30-frame 80x48 one (resized, with a note naming it), each sampled as the test
    config samples (2 clips x 3 crops, averaged by the model's MultiViewTTA); a missing and a
    truncated file are reported by name and the others still print."""
    from glocal.modalities.video import DIRECTIONS, render_moving_clip, write_video

    rng = np.random.default_rng(0)
    item = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    east = tmp_path / "east.mp4"
    write_video(east, render_moving_clip(item, np.array([10.0, 20.0]), np.array([0.0, 2.0]), 16, 64), fps=8)
    wide = tmp_path / "wide.mp4"
    write_video(wide, rng.integers(0, 256, (30, 48, 80, 3), dtype=np.uint8), fps=25)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(east.read_bytes()[:east.stat().st_size // 2])
    missing = tmp_path / "missing.mp4"
    code = run(MFM, checkpoint(MFM, tmp_path), east, missing, wide, cut, out=tmp_path / "r.json", extra=["--topk", "3"])
    out, err = capsys.readouterr()
    assert code == 2
    assert [line.split(": ")[0] for line in out.splitlines()] == [str(east), str(wide)]
    assert re.search(rf"error: {re.escape(str(missing))}: video file not found", err), err
    assert re.search(rf"error: {re.escape(str(cut))}: .*truncated", err), err
    assert "2 of 4 inputs failed" in err
    assert re.search(r"note: \S*wide\.mp4 is 80x48 pixels .* resized to 64x64", err), err
    records = json.loads((tmp_path / "r.json").read_text())
    assert [r["input"] for r in records] == [str(east), str(missing), str(wide), str(cut)]
    for r in (records[0], records[2]):
        assert len(r["topk"]) == 3 and all(t["name"] in DIRECTIONS for t in r["topk"])
        assert len(r["scores"]) == 8 and abs(sum(r["scores"]) - 1) < 1e-5
    reader = infer.Reader.from_config(load_config(MFM))
    sample, _ = reader.sample(str(east))
    assert sample["inputs"].shape == (6, 3, 8, 32, 32)  # the test views: 2 clips x 3 crops, [V, C, T, H, W]
    assert sample["frame_inds"].tolist() == [list(range(0, 16, 2)), list(range(1, 16, 2))]
