# Semantic segmentation of generated point-cloud scenes (see scenes_local_global.py for the data, the
# budget and the metric), GLOBAL ONLY: the same PTv3 U-Net with the bidirectional selective scan along
# the serialization curve over the whole crop and no patch attention (xCPE stays: it is every variant's
# positional encoding); MLP ratio 5 (4 in scenes_local_global.py) keeps the size matched.
#
#   .venv/bin/python tools/train.py configs/points/scenes_global.py
# 5,888,586 parameters.
_base_ = ['../_base_/default_runtime.py']

epochs = 4
classes = ('ground', 'bear', 'elephant', 'knot', 'cube', 'sphere', 'gear', 'anchor', 'cylinder', 'clutter')

model = dict(
    type='TaskModel',
    adapter=dict(type='PointStem', in_dim=6),
    backbone=dict(type='PointTransformerV3', in_dim=6, grid_size=0.06, stride=(2, 2, 2), enc_depths=(1, 1, 2, 1),
                  enc_channels=(32, 64, 128, 256), enc_heads=(2, 4, 8, 16), enc_patch=128, dec_depths=(1, 1, 1),
                  dec_channels=(32, 64, 128), dec_heads=(2, 4, 8), dec_patch=128, mlp_ratio=5.0, drop_path_rate=0.1,
                  bn_momentum=0.1,  # BatchNorm statistics that keep up with a short schedule
                  local=None,
                  global_=dict(type='Mamba', direction='order_bidirectional')),
    head=dict(type='TokenHead', num_classes=len(classes), drop=0.0),
    loss=dict(type='CrossEntropyLoss', target='seg'),
    postprocess=dict(type='SegmentPost', target='seg'),
)

scenes = dict(type='PointScenes', classes=classes[1:-1], area=5.0, points_per_scene=5000, objects=(3, 5),
              object_size=(0.5, 0.9), clutter=(3, 6), features=('coords', 'normals'))
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(scenes, split='train', transforms=[
        dict(type='RandomRotate', axis='z'),
        dict(type='RandomScale', scale=(0.9, 1.1)), dict(type='RandomJitter', sigma=0.005, clip=0.02)]),
)
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(scenes, split='val'),
)
test_dataloader = dict(val_dataloader, dataset=dict(scenes, split='test'))
val_evaluator = dict(type='IoUMetric', num_classes=len(classes), class_names=classes)
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
