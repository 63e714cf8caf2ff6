#!/usr/bin/env python
"""Export a model's weights as safetensors, with the resolved config next to them.

    python tools/export.py CONFIG CHECKPOINT --out model.safetensors [--cfg-options KEY=VALUE ...]

writes ``model.safetensors`` (parameters and persistent buffers; tied tensors stored once) and
``model.py`` (the config). ``glocal.tasks.engine.load_weights(model, "model.safetensors")`` loads
them back, as does ``tools/test.py CONFIG model.safetensors``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Export weights as safetensors")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help=".pth checkpoint (or .safetensors)")
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config keys")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from glocal.core.errors import ConfigError
    from glocal.tasks.engine import build_model, load_weights, prepare_config, save_safetensors, validate_config

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out must end in .safetensors; got {out}")
    cfg = prepare_config(args.config, args.cfg_options)
    validate_config(cfg)
    model = load_weights(build_model(cfg), args.checkpoint)
    config_path = out.with_suffix(".py")
    save_safetensors(model, out, metadata={"config": config_path.name, "source": Path(args.checkpoint).name})
    cfg.dump(str(config_path))
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} ({n:,} parameters) and {config_path}")
    return 0


if __name__ == "__main__":
    from glocal.tasks.engine import run_tool
    run_tool(main)
