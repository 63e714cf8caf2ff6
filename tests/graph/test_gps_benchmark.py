"""Smoke test of ``tools/benchmark.py --suite graph`` at tiny sizes (it checks the CSV, not the
speed: the real measurement runs on a quiet machine)."""
import csv
import importlib.util
import pathlib
import sys

import torch

TOOL = pathlib.Path(__file__).resolve().parents[2] / "tools" / "benchmark.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("glocal_benchmark_tool_graph", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_graph_suite_quick(tmp_path):
    out = tmp_path / "graph.csv"
    threads = torch.get_num_threads()
    try:
        assert _load_tool().main(["--suite", "graph", "--quick", "--repeats", "1", "--threads", "1",
                                  "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    with open(out) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    ours = next(r for r in rows if r["component"].startswith("glocal GPS (GINE || FullAttention)"))
    peer = next(r for r in rows if r["component"].startswith("PyG GPSConv"))
    assert float(ours["ratio_to_peer"]) > 0 and "graphs/s" in ours["note"] and ours["peer"] == peer["component"]
    assert int(ours["params"]) > 0 and float(peer["fwdbwd_ms"]) > 0
    memory = [r for r in rows if "largest tensor" in r["note"]]
    assert len(memory) == 6  # full / linear / scan, on one large graph and on a batch of molecules
    big = [r for r in memory if "one graph" in r["input_size"]]
    for r in big:
        assert float(r["peak_mb"]) > 0
        largest = int(r["note"].split("largest tensor ")[1].split(" ")[0].replace(",", ""))
        if "full attention" not in r["component"]:
            assert largest < 1000 * 1000, r  # no N x N tensor for the linear mixers (N = 1,000 here)
