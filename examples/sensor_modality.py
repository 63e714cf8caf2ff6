"""Bring your own modality: multichannel sensor time series, trained with glocal in < 50 lines.

Each series has 4 channels x 256 steps of noise and two short bursts of one shape (chirps or square
waves, 16 steps) at least 96 steps apart. The label is (the shape, whether both bursts are in the
SAME channel): the shape is local evidence, the channel relation between two distant bursts is
long-range evidence. A local-only model (whose pooled output is a sum of local terms) cannot
relate the two bursts, so it stays near 75% accuracy; a local + global model can.

    .venv/bin/python examples/sensor_modality.py            # local + global, prints test accuracy
    .venv/bin/python examples/sensor_modality.py --local-only
"""
import argparse

import numpy as np
import torch
from torch import nn

from glocal.tasks.api import ADAPTERS, DATASETS, GlocalDataset, GridUndo, Tokens, test, train


@DATASETS.add
class SensorSeries(GlocalDataset):
    def __init__(self, split="train", size=3000, length=256, seed=0, transforms=None, **policy):
        super().__init__(transforms, **policy)  # on_error="skip", max_skips=N: see GlocalDataset
        rng = np.random.default_rng([seed, split == "test"])  # test series never equal train ones
        t = np.arange(16)
        motifs = np.stack([np.sin(np.pi * t * t / 32), np.sign(np.sin(np.pi * t / 4))])  # chirp, square
        self.x = rng.normal(0, 0.5, (size, 4, length)).astype(np.float32)
        self.y = rng.integers(0, 4, size)  # 2 * shape + same channel
        for x, y in zip(self.x, self.y):
            first = rng.integers(0, length - 16 - 96)
            c1 = rng.integers(0, 4)
            c2 = c1 if y % 2 else (c1 + rng.integers(1, 4)) % 4
            for start, c in ((first, c1), (rng.integers(first + 96, length - 16), c2)):
                x[c, start:start + 16] += 2 * motifs[y // 2]

    def __len__(self):
        return len(self.y)

    def load(self, i):
        return dict(inputs=torch.from_numpy(self.x[i]), label=int(self.y[i]))


@ADAPTERS.add
class SensorStem(nn.Module):
    """``batch['inputs'] [B, channels, T]`` -> tokens on a ``(T / patch,)`` grid (+ the undo)."""

    def __init__(self, in_chans=4, dim=32, patch=4):
        super().__init__()
        self.out_dim, self.patch = dim, patch
        self.proj = nn.Conv1d(in_chans, dim, patch, stride=patch)

    def forward(self, batch):
        x = self.proj(batch["inputs"])  # [B, dim, T / patch]
        return Tokens(x.transpose(1, 2), grid=(x.shape[-1],)), GridUndo((batch["inputs"].shape[-1],), (self.patch,))


def config(local_only=False, size=3000, epochs=30, work_dir="work_dirs/sensor_example"):
    block = dict(local=dict(type="DepthwiseConv", kernel=5, rank=1), ffn=dict(type="Mlp", ratio=2),
                 global_=None if local_only else dict(type="FullAttention", heads=2))
    data = lambda split: dict(batch_size=50, dataset=dict(type="SensorSeries", split=split, size=size))  # noqa: E731
    return dict(
        model=dict(type="TaskModel", adapter=dict(type="SensorStem"), head=dict(type="ClsHead", num_classes=4),
                   backbone=dict(type="Backbone", stages=[dict(dim=32, depth=2, blocks=block)])),
        train_dataloader=data("train"), val_dataloader=data("test"), test_dataloader=data("test"),
        val_evaluator=dict(type="Accuracy", topk=(1,)), test_evaluator=dict(type="Accuracy", topk=(1,)),
        optim_wrapper=dict(optimizer=dict(type="AdamW", lr=3e-3, weight_decay=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=epochs), val_cfg=dict(), test_cfg=dict(),
        work_dir=work_dir, randomness=dict(seed=0))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local-only", action="store_true", help="drop the global attention")
    parser.add_argument("--size", type=int, default=3000, help="training series")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--work-dir", default="work_dirs/sensor_example")
    args = parser.parse_args()
    cfg = config(args.local_only, args.size, args.epochs, args.work_dir)
    train(cfg)
    print(f"test top-1: {test(cfg)['top1']:.2f}%")
