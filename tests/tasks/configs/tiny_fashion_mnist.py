# A tiny local+global classifier (~0.2 M parameters) on 128 Fashion-MNIST images: the engine tests'
# config.
# Dropout, drop-path and random augmentation are all on, so exact resume is a real check.
_base_ = ['../../../configs/_base_/default_runtime.py']

model = dict(
    type='Classifier',
    data_preprocessor=dict(type='ImageDataPreprocessor', mean=(0.286,), std=(0.353,)),
    adapter=dict(type='PatchStem', in_chans=1, dim=48, patch=4),
    backbone=dict(
        type='Backbone',
        drop_path_rate=0.2,
        stages=[
            dict(dim=48, depth=1, blocks=dict(local=dict(type='WindowAttention', heads=2, window=7))),
            dict(dim=96, depth=1, blocks=dict(local=dict(type='DepthwiseConv', kernel=3),
                                              global_=dict(type='FullAttention', heads=4))),
        ]),
    head=dict(type='ClsHead', num_classes=10, drop=0.2),
)

train_pipeline = [
    dict(type='RandomCrop', size=28, padding=2),
    dict(type='RandomFlip', p=0.5),
    dict(type='RandomErasing', p=0.5),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=16, num_workers=0,
    dataset=dict(type='FashionMNIST', split='train', limit=128, transforms=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=32, num_workers=0,
    dataset=dict(type='FashionMNIST', split='test', limit=64, transforms=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=1)
val_cfg = dict()
test_cfg = dict()

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.2, by_epoch=False, begin=0, end=4),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0),
]

default_hooks = dict(logger=dict(type='LoggerHook', interval=4))
visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])
