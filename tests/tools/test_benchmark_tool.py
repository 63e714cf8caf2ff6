"""Smoke test of tools/benchmark.py (not a timed test: it checks the CSV, not the speed)."""
import csv
import importlib.util
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "benchmark.py"
REQUIRED = ["component", "config", "input_size", "batch", "threads", "fwd_ms", "fwdbwd_ms", "peak_mb", "params",
            "macs", "peer", "ratio_to_peer"]


def _load_tool():
    spec = importlib.util.spec_from_file_location("glocal_benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def read_rows(path):
    with open(path) as f:
        lines = [line for line in f if not line.startswith("#")]
    return list(csv.DictReader(lines))


def test_mixers_quick_writes_positive_numbers(tmp_path):
    out = tmp_path / "mixers.csv"
    threads = torch.get_num_threads()
    try:  # in process: the command line's main(), without paying the imports twice
        assert _load_tool().main(["--suite", "mixers", "--quick", "--repeats", "1", "--threads", "1",
                                  "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert out.read_text().startswith("#")  # the measuring method is stated in the header
    rows = read_rows(out)
    assert set(REQUIRED) <= set(rows[0])
    measured = {r["component"]: r for r in rows if r["fwdbwd_ms"]}
    for name in ("FullAttention", "WindowAttention", "GINE", "GatedGCN", "DepthwiseConv", "Mlp"):
        assert name in measured, (name, [r["component"] + ": " + r["note"] for r in rows])
    for name, r in measured.items():
        for col in ("fwd_ms", "fwdbwd_ms", "peak_mb", "params", "macs"):
            assert float(r[col]) > 0, (name, col, r[col])
        assert r["threads"] == "1" and r["batch"] == "1"
    # every registered mixer appears: measured, or skipped with a note saying why
    from glocal.core import MIXERS

    listed = {r["component"] for r in rows}
    assert set(MIXERS.names()) <= listed
    for r in rows:
        assert r["fwdbwd_ms"] or r["note"] or r["component"] == "dense fp32 GEMM", r


def test_peak_memory_counts_what_a_step_allocates():
    tool = _load_tool()

    def step():
        a = torch.ones(1024, 1024)  # 4 MiB
        b = a * 2  # 4 MiB more while a is alive
        del a, b

    peak = tool.peak_memory_mb(step)
    assert 7.9 < peak < 8.5

    keep = torch.ones(1024, 1024)  # allocated before the step: not counted
    assert tool.peak_memory_mb(lambda: keep.sum()) < 0.1


def test_loglog_slope():
    tool = _load_tool()
    xs = [1024, 2048, 4096, 8192]
    assert abs(tool.loglog_slope(xs, [3 * x for x in xs]) - 1) < 1e-9
    assert abs(tool.loglog_slope(xs, [x * x for x in xs]) - 2) < 1e-9


def test_peers_quick_compares_each_backend(tmp_path):
    """The scan, neighbourhood-attention and Conformer comparisons run and write a ratio on every
    row of ours, for each backend this machine has (not a timing: any ratio is accepted)."""
    out = tmp_path / "peers.csv"
    threads = torch.get_num_threads()
    try:
        assert _load_tool().main(["--suite", "peers", "--quick", "--repeats", "1", "--threads", "1",
                                  "--only", "scan", "neighborhood", "conformer", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = read_rows(out)
    ours = {r["component"]: r for r in rows if r["ratio_to_peer"]}
    expected = ["glocal selective_scan (PyTorch chunks)", "glocal NeighborhoodAttention (PyTorch tiles)",
                "glocal conformer_s"]
    from glocal.core import scan_kernel
    from glocal.core.neighborhood import _na_library

    if scan_kernel.available():
        expected.append("glocal selective_scan (compiled kernel)")
    if _na_library(torch.float32) is not None:
        expected.append("glocal NeighborhoodAttention (compiled kernel)")
    for name in expected:
        assert name in ours, (name, sorted(ours))
        assert float(ours[name]["ratio_to_peer"]) > 0 and ours[name]["peer"]


def test_collate_quick_compares_bucketed_with_plain_padding(tmp_path):
    out = tmp_path / "collate.csv"
    threads = torch.get_num_threads()
    try:
        assert _load_tool().main(["--suite", "collate", "--quick", "--repeats", "1", "--threads", "1",
                                  "--bucket-sizes", "5", "1000", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = [r for r in read_rows(out) if r["padding_share"]]
    assert [(r["component"], r["config"]) for r in rows] == [
        ("plain shuffling", "batch 32"), ("BucketBatchSampler", "batch 32, bucket_size=5"),
        ("BucketBatchSampler", "batch 32, bucket_size=32")]  # 1000 samples: 32 batches at most in a bucket
    plain, small, whole = (float(r["padding_share"]) for r in rows)
    assert whole < small < plain and whole < plain / 4
    for r in rows:
        assert float(r["fwd_ms"]) > 0 and int(r["params"]) > 0
    assert all(float(r["ratio_to_peer"]) > 0 and r["peer"] == "plain shuffling" for r in rows[1:])


def test_speech_quick_sweeps_an_encoder_and_the_feature_pipeline(tmp_path):
    out = tmp_path / "speech.csv"
    threads = torch.get_num_threads()
    try:
        assert _load_tool().main(["--suite", "speech", "--quick", "--repeats", "1", "--threads", "1",
                                  "--match", "ctc_local", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = read_rows(out)
    sweep = [r for r in rows if r["component"] == "ctc_local" and r["fwdbwd_ms"]]
    assert [r["input_size"] for r in sweep] == ["0.25 min (1500 frames)", "0.5 min (3000 frames)", "1 min (6000 frames)"]
    for r in sweep:
        assert float(r["fwd_ms"]) > 0 and float(r["peak_mb"]) > 0 and int(r["params"]) > 2_000_000
    slope, = (r for r in rows if r["config"] == "log-log slope")
    assert 0.8 < float(slope["slope_mem"]) < 1.2  # a convolution encoder: memory linear in length
    feats, = (r for r in rows if r["component"].startswith("Fbank"))
    assert "utterances/s" in feats["note"] and float(feats["fwd_ms"]) > 0


def test_points_quick_sweeps_attention_knn_and_the_serialization_share(tmp_path):
    out = tmp_path / "points.csv"
    threads = torch.get_num_threads()
    try:
        assert _load_tool().main(["--suite", "points", "--quick", "--repeats", "1", "--threads", "1",
                                  "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = read_rows(out)
    sweep = [r for r in rows if r["component"] == "SerializedAttention" and r["fwdbwd_ms"]]
    assert [r["input_size"] for r in sweep] == ["1024 points", "2048 points", "4096 points"]
    assert all("per 100K points" in r["note"] and float(r["peak_mb"]) > 0 for r in sweep)
    knn = [r for r in rows if r["component"].startswith("glocal knn_edges")]
    assert len(knn) == 3 and all(float(r["ratio_to_peer"]) > 0 for r in knn)
    share = {r["component"]: r["note"] for r in rows if r["component"].startswith("PTv3 training step")}
    assert set(share) == {"PTv3 training step: glocal.serialize", "PTv3 training step: glocal.grid_pool"}
    assert all("% of the step" in note for note in share.values()), share
    big, = (r for r in rows if r["component"].startswith("PTv3 U-Net training step"))
    assert big["input_size"] == "5000 points" and float(big["peak_mb"]) > 0 and "RSS" in big["note"]


def test_points_parts_by_match(tmp_path):
    out = tmp_path / "knn.csv"
    threads = torch.get_num_threads()
    try:
        assert _load_tool().main(["--suite", "points", "--quick", "--repeats", "1", "--threads", "1",
                                  "--match", "knn", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    components = {r["component"].split(" (")[0] for r in read_rows(out)}
    assert components - {"dense fp32 GEMM"} == {"glocal knn_edges", "open3d KDTreeFlann"}, components  # + the calibration row


def test_video_quick_compares_decord_with_pyav(tmp_path):
    """One row per (file, reader, mode) with frames/s; the decord row of each mode carries the
    decord / PyAV ratio (not a timing: any positive ratio is accepted)."""
    out = tmp_path / "video.csv"
    threads = torch.get_num_threads()
    try:
        assert _load_tool().main(["--suite", "video", "--quick", "--repeats", "1", "--threads", "1",
                                  "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = [r for r in read_rows(out) if r["frames_per_s"]]
    modes = ["sequential", "clips", "clips + resize"]
    assert [(r["component"].split()[0], r["config"].split(":")[0]) for r in rows] == [
        (reader, mode) for mode in modes for reader in ("decord", "PyAV")]
    for r in rows:
        assert r["input_size"].startswith("moving: 64x64, 16 frames")
        assert float(r["frames_per_s"]) > 0 and float(r["fwd_ms"]) > 0 and "frames/s" in r["note"]
    for decord_row, pyav_row in zip(rows[0::2], rows[1::2]):
        assert float(decord_row["ratio_to_peer"]) > 0 and decord_row["peer"].startswith("PyAV")
        ratio = float(decord_row["frames_per_s"]) / float(pyav_row["frames_per_s"])
        assert abs(float(decord_row["ratio_to_peer"]) / ratio - 1) < 0.01
        assert "decoded by decord" in decord_row["note"] and "decoded by pyav" in pyav_row["note"]
    assert "resized to 112x112" in rows[-1]["config"]


def test_peers_video_swin_quick_has_torchvisions_params_and_outputs(tmp_path):
    import re

    out = tmp_path / "video_swin.csv"
    threads = torch.get_num_threads()
    try:
        assert _load_tool().main(["--suite", "peers", "--quick", "--repeats", "1", "--threads", "1",
                                  "--only", "video_swin", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = {r["component"]: r for r in read_rows(out)}
    ours, theirs = rows["glocal video_swin_t (TubeletStem + ClsHead)"], rows["torchvision swin3d_t"]
    assert int(ours["params"]) == int(theirs["params"]) == 28_158_070
    assert ours["input_size"] == theirs["input_size"] == "3x4x32x32"
    diff = float(re.search(r"max \|ours - torchvision\| = (\S+)", ours["note"]).group(1))
    assert diff < 1e-4, ours["note"]
    assert float(ours["ratio_to_peer"]) > 0 and ours["peer"] == "torchvision swin3d_t"
    for r in (ours, theirs):
        assert float(r["fwd_ms"]) > 0 and float(r["fwdbwd_ms"]) > 0 and float(r["peak_mb"]) > 0
