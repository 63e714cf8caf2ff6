"""tools/summary.py on a registered backbone (small token grid) and its error for unknown names."""
import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "summary.py"


def main(*args):
    spec = importlib.util.spec_from_file_location("glocal_summary_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.main(list(args))


def test_backbone_on_a_token_grid(capsys):
    assert main("swin_t", "--grid", "14,14", "--depth", "1") == 0
    out = capsys.readouterr().out
    assert "stages (ModuleList)" in out and "total" in out
    assert "params 27,514,458" in out  # Swin-T without stem and head


def test_backbone_on_images_adds_stem_and_head(capsys):
    assert main("swin_t", "--input-shape", "1,3,64,64", "--num-classes", "10", "--depth", "1") == 0
    out = capsys.readouterr().out
    assert "adapter (PatchStem)" in out and "head (ClsHead)" in out
    assert f"params {27_514_458 + 4_896 + 768 * 10 + 10:,}" in out


def test_unknown_name_lists_close_names(capsys):
    assert main("swin_tt", "--grid", "14,14") == 2
    assert "did you mean: swin_t" in capsys.readouterr().err


def test_config_file(tmp_path, capsys):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(
        "model = dict(type='Classifier',\n"
        "    adapter=dict(type='PatchStem', in_chans=1, dim=16, patch=4),\n"
        "    backbone=dict(type='IsotropicBackbone', depth=1, blocks=dict(\n"
        "        global_=dict(type='FullAttention', heads=2), ffn=dict(type='Mlp', ratio=2))),\n"
        "    head=dict(type='ClsHead', num_classes=3))\n")
    assert main(str(cfg), "--input-shape", "1,1,16,16", "--depth", "1") == 0
    out = capsys.readouterr().out
    L, C = 16, 16  # 4x4 patch grid of width 16
    macs = (L * C * 16  # stem conv
            + 3 * L * C  # three LayerNorms (stem, attention step, FFN step) + out norm below
            + L * C * 3 * C + L * C * C + 2 * L * L * C  # attention
            + 2 * L * C * 2 * C  # Mlp
            + L * C  # backbone out norm
            + C * 3)  # head
    assert f"MACs {macs:,}" in out


def test_parameters_without_an_input_shape(capsys):
    assert main(str(ROOT / "configs" / "audio" / "ctc_conformer.py"), "--depth", "1") == 0
    out = capsys.readouterr().out
    assert "parameters only" in out and "params 2,132,509" in out  # the count the config states
    assert "backbone (Conformer)" in out and "MACs" not in out.split("\n", 1)[1]
    assert main("swin_t", "--depth", "0") == 0
    assert "params 27,514,458" in capsys.readouterr().out
