# Shape classification (see shapes_local_global.py for the data and the metric), GLOBAL ONLY: the
# same PTv3 encoder with the bidirectional selective scan along the serialization curve over the
# whole cloud and no patch attention (the xCPE sparse convolution stays: it is the positional
# encoding of every variant); the MLPs are wider (ratio 5) to keep the size matched.
#
#   .venv/bin/python tools/train.py configs/points/shapes_global.py
# 4,806,196 parameters (shapes_local_global.py: 5,016,084; shapes_local.py: 4,831,220).
_base_ = ['../_base_/default_runtime.py']

epochs = 8
classes = 20

model = dict(
    type='TaskModel',
    adapter=dict(type='PointStem', in_dim=3),
    backbone=dict(type='PointTransformerV3', in_dim=3, grid_size=0.08, stride=(2, 2, 2), enc_depths=(1, 1, 2, 1),
                  enc_channels=(32, 64, 128, 256), enc_heads=(2, 4, 8, 16), enc_patch=128, dec_depths=(),
                  mlp_ratio=5.0, drop_path_rate=0.1, bn_momentum=0.1,  # the attention's parameters moved into the MLPs
                  local=None,
                  global_=dict(type='Mamba', direction='order_bidirectional')),
    head=dict(type='ClsHead', num_classes=classes, drop=0.1),
    loss=dict(type='CrossEntropyLoss', label_smoothing=0.1),
)

shapes = dict(type='ShapeClassification', points=512)
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(shapes, split='train', transforms=[
        dict(type='RandomScale', scale=(0.9, 1.1)), dict(type='RandomJitter', sigma=0.005, clip=0.02)]),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(shapes, split='val'),
)
test_dataloader = dict(val_dataloader, dataset=dict(shapes, split='test'))
val_evaluator = dict(type='Accuracy', topk=(1,), mean_class=True)  # top1 = overall accuracy; mAcc
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
