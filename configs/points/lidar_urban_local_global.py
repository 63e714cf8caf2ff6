# Semantic segmentation of a second real aerial LiDAR tile: urban.las from CGAL's examples (13,511
# points with intensity; ASPRS classes mapped to ground (2,441) / vegetation (11,041); it has no
# buildings, so roof is absent and mIoU is over ground and vegetation), cut into 8 m strips along x
# with every third strip held out for test (glocal.modalities.points.LidarTiles, tile='urban').
# Crops, budget, model and the reading of validation as in lidar_b9_local_global.py; features are
# xyz + intensity (points about 0.55 m apart).
#
#   .venv/bin/python tools/train.py configs/points/lidar_urban_local_global.py
#
# Ablations at matched size (within 10%): lidar_urban_local.py, lidar_urban_global.py.
# 6,134,371 parameters.
_base_ = ['../_base_/default_runtime.py']

epochs = 8
classes = ('ground', 'vegetation', 'roof')

model = dict(
    type='TaskModel',
    adapter=dict(type='PointStem', in_dim=4),
    backbone=dict(type='PointTransformerV3', in_dim=4, grid_size=1.0, stride=(2, 2, 2), enc_depths=(1, 1, 2, 1),
                  enc_channels=(32, 64, 128, 256), enc_heads=(2, 4, 8, 16), enc_patch=128, dec_depths=(1, 1, 1),
                  dec_channels=(32, 64, 128), dec_heads=(2, 4, 8), dec_patch=128, mlp_ratio=4.0, drop_path_rate=0.1,
                  bn_momentum=0.1,  # BatchNorm statistics that keep up with a short schedule
                  local=dict(type='SerializedAttention'),
                  global_=dict(type='Mamba', direction='order_bidirectional')),
    head=dict(type='TokenHead', num_classes=len(classes), drop=0.0),
    loss=dict(type='CrossEntropyLoss', target='seg'),
    postprocess=dict(type='SegmentPost', target='seg'),
)

tile = dict(type='LidarTiles', tile='urban', points=2048)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(tile, split='train', transforms=[
        dict(type='RandomRotate', axis='z'), dict(type='RandomScale', scale=(0.9, 1.1)),
        dict(type='RandomJitter', sigma=0.05, clip=0.2)]),
)
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(tile, split='test'),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', num_classes=len(classes), class_names=classes)
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
