# The default demo: a small local + global model trained on the full Fashion-MNIST (60,000 train /
# 10,000 test, Debian's dataset-fashion-mnist) on a plain CPU.
#
#   .venv/bin/python tools/train.py configs/image/fashion_mnist_demo.py
#
# Model (UniFormer-like): a conv stem to a 14x14 grid, one local block (BatchNorm, depthwise conv +
# FFN), then at 7x7 blocks with a local depthwise conv AND a global full attention; ReLU throughout
# (18% faster per step on this CPU than GELU, at no loss here). 239K parameters. Evaluation
# averages the class probabilities of each test image and its horizontal flip (tta_flip_dims).
# Measured on the 2-core CPU (two processes of one thread, cpu_procs below): 92.70% top-1 in
# 11.8 minutes wall, 8 epochs; more runs in the README.
_base_ = ['../_base_/default_runtime.py']

num_classes = 10
epochs = 8
# two data-parallel processes of one thread each on a CPU-only machine (tools/train.py starts them;
# --procs 1 for one process): ~1.3x faster than one process with two threads on this small model.
# The batch size below is per process: 2 x 32 = 64 images per step.
cpu_procs = 2

model = dict(
    type='Classifier',
    data_preprocessor=dict(type='ImageDataPreprocessor', mean=(0.286,), std=(0.353,)),
    adapter=dict(type='ConvStem', in_chans=1, dims=(32, 48), strides=(1, 2), act='ReLU'),  # 28x28 -> 14x14 grid, 48 ch
    backbone=dict(
        type='Backbone',
        downsample=dict(type='ConvDownsample', norm='LayerNorm'),  # 2x2 stride-2 conv: 14x14 -> 7x7
        drop_path_rate=0.0,
        stages=[
            dict(dim=48, depth=1, blocks=dict(
                norm='BatchNorm',
                local=dict(type='DepthwiseConv', kernel=5),
                ffn=dict(type='Mlp', ratio=3, act='ReLU'))),
            dict(dim=96, depth=2, blocks=dict(
                local=dict(type='DepthwiseConv', kernel=3),
                global_=dict(type='FullAttention', heads=3),
                ffn=dict(type='Mlp', ratio=3, act='ReLU'))),
        ]),
    head=dict(type='ClsHead', num_classes=num_classes),
    loss=dict(type='CrossEntropyLoss', label_smoothing=0.1),
    tta_flip_dims=(-1,),  # evaluate on the image and its horizontal flip (training flips too)
)

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(type='FashionMNIST', split='train', transforms=[
        dict(type='RandomFlip', p=0.5),
        dict(type='PackInputs'),
    ]),
)
val_dataloader = dict(
    batch_size=500,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(type='FashionMNIST', split='test', transforms=[dict(type='PackInputs')]),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=400),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=epochs)
val_cfg = dict()
test_cfg = dict()
