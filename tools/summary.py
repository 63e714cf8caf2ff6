"""Parameters and MACs of a model, per module (glocal.core.complexity; the counting rules are in its
docstring). MACs are multiply-accumulates: what papers call "FLOPs".

    # a config file: parameters per module (no input needed)
    python tools/summary.py configs/audio/ctc_conformer.py
    # ... and MACs: builds MODELS.build(cfg.model) and feeds a random batch of --input-shape (or
    # of the config's own `input_shape`)
    python tools/summary.py configs/image/swin_t_imagenet.py --input-shape 1,3,224,224
    # a registered backbone on images: PatchStem(patch) + backbone + ClsHead(num_classes)
    python tools/summary.py swin_t --input-shape 1,3,224,224
    # a registered backbone on a token grid of its input width (--dim to override); without
    # --grid or --input-shape: parameters only
    python tools/summary.py swin_t --grid 56,56 [--batch 1]

Options: ``--depth`` (table depth, default 2), ``--min-share`` (hide rows below this fraction),
``--cfg-options k=v ...`` (config overrides, as in tools/train.py).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch


def parse_args(argv=None):
    from glocal.tasks.engine.cli import int_tuple

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("target", help="a config file (.py) with a `model` dict, or a registered backbone name")
    p.add_argument("--input-shape", type=int_tuple, help="input batch shape, e.g. 1,3,224,224")
    p.add_argument("--grid", type=int_tuple, help="token grid for a backbone, e.g. 56,56 (no stem or head)")
    p.add_argument("--batch", type=int, default=1, help="batch size with --grid (default 1)")
    p.add_argument("--dim", type=int, help="token width with --grid (default: the backbone's input width)")
    p.add_argument("--patch", type=int, default=4, help="PatchStem patch size with a backbone name and an "
                                                        "image --input-shape (default 4)")
    p.add_argument("--num-classes", type=int, default=1000, help="ClsHead classes with a backbone name "
                                                                 "and an image --input-shape (default 1000)")
    p.add_argument("--depth", type=int, default=2, help="table depth (default 2)")
    p.add_argument("--min-share", type=float, default=0.0, help="hide rows below this share of the totals")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    return p.parse_args(argv)


def _in_dim(backbone) -> int:
    if getattr(backbone, "in_dim", None):
        return int(backbone.in_dim)
    cfg = getattr(backbone, "cfg", None)
    if getattr(cfg, "dim", None):
        return int(cfg.dim)
    return int(backbone.dims[0])


def build(args):
    """``(model, inputs)`` for the command line."""
    from glocal.core.errors import ConfigError
    from glocal.core.registry import BACKBONES
    from glocal.tasks.registry import MODELS
    from glocal.core.tokens import Tokens

    if os.path.isfile(args.target) or args.target.endswith(".py"):
        from mmengine.config import Config

        cfg = Config.fromfile(args.target)
        if args.cfg_options:
            cfg.merge_from_dict(_options(args.cfg_options))
        if "model" not in cfg:
            raise ConfigError(f"{args.target} has no `model` dict")
        model = MODELS.build(cfg.model.to_dict() if hasattr(cfg.model, "to_dict") else cfg.model)
        shape = args.input_shape or tuple(cfg.get("input_shape", ()) or ())
        return model, ((torch.randn(*shape),) if shape else None)

    if args.target not in BACKBONES:
        BACKBONES.get(args.target)  # raises the registry's error with close names
    if args.grid:
        backbone = BACKBONES.build(dict(type=args.target))
        dim = args.dim or _in_dim(backbone)
        L = 1
        for g in args.grid:
            L *= g
        return backbone, (Tokens(torch.randn(args.batch, L, dim), grid=args.grid),)
    if args.input_shape and len(args.input_shape) == 4:
        model = MODELS.build(dict(
            type="Classifier",
            adapter=dict(type="PatchStem", in_chans=args.input_shape[1], patch=args.patch,
                         dim=args.dim or _in_dim(BACKBONES.build(dict(type=args.target))), norm="LayerNorm"),
            backbone=dict(type=args.target), head=dict(type="ClsHead", num_classes=args.num_classes)))
        return model, (torch.randn(*args.input_shape),)
    return BACKBONES.build(dict(type=args.target)), None  # parameters only


def _options(items):
    """``k=v`` strings -> dict, values parsed as Python literals when they are."""
    import ast

    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from glocal.core.complexity import count, count_params
    from glocal.core.errors import GlocalError

    try:
        model, inputs = build(args)
    except GlocalError as e:
        print(f"summary.py: {e}", file=sys.stderr)
        return 2
    if inputs is None:
        print(f"{args.target}  (parameters only: give --input-shape, or --grid for a backbone, for MACs)")
        print(count_params(model).table(max_depth=args.depth, min_share=args.min_share))
        return 0
    report = count(model, *inputs)
    shapes = ", ".join(str(tuple(getattr(i, "x", i).shape)) + (f" grid={i.grid}" if getattr(i, "grid", None) else "")
                       for i in inputs)
    print(f"{args.target}  input {shapes}")
    print(report.table(max_depth=args.depth, min_share=args.min_share))
    print("MACs = multiply-accumulates (papers' 'FLOPs'); rules: glocal.core.complexity")
    return 0


if __name__ == "__main__":
    sys.exit(main())
