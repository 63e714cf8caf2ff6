# Semantic segmentation of a real aerial LiDAR tile: CGAL's b9_training.ply (22,300 points with RGB,
# 2,447 of them labelled ground / vegetation / roof; the rest unlabelled and ignored), cut into 8 m
# strips along x with every third strip held out as the test region (glocal.modalities.points.LidarTiles).
# Training samples: 2,048-point crops around random labelled points of the train strips; test: the
# test strips in blocks of at most 2,048 points, every point predicted once. There is no third
# region for validation: validation runs on the test blocks to show the curve, and the reported
# number is the last epoch's (no selection on it). Metric: mIoU, overall accuracy, per-class IoU.
#
#   .venv/bin/python tools/train.py configs/points/lidar_b9_local_global.py
#
# Model: the small PTv3 U-Net of scenes_local_global.py on xyz + rgb with a 1 m grid (points are
# about 0.9 m apart; on a 0.5 m grid a step took 2.2x as long, the sparse convolutions seeing almost
# no neighbours): xCPE -> serialized patch attention -> bidirectional scan along the curve -> MLP per
# block; a per-point classifier. 6,142,371 parameters. Budget: 8 epochs of 100 crops, batch 4 (about
# 5 min at one thread). Ablations at matched size (within 10%): lidar_b9_local.py, lidar_b9_global.py.
_base_ = ['../_base_/default_runtime.py']

epochs = 8
classes = ('ground', 'vegetation', 'roof')

model = dict(
    type='TaskModel',
    adapter=dict(type='PointStem', in_dim=6),
    backbone=dict(type='PointTransformerV3', in_dim=6, grid_size=1.0, stride=(2, 2, 2), enc_depths=(1, 1, 2, 1),
                  enc_channels=(32, 64, 128, 256), enc_heads=(2, 4, 8, 16), enc_patch=128, dec_depths=(1, 1, 1),
                  dec_channels=(32, 64, 128), dec_heads=(2, 4, 8), dec_patch=128, mlp_ratio=4.0, drop_path_rate=0.1,
                  bn_momentum=0.1,  # BatchNorm statistics that keep up with a short schedule
                  local=dict(type='SerializedAttention'),
                  global_=dict(type='Mamba', direction='order_bidirectional')),
    head=dict(type='TokenHead', num_classes=len(classes), drop=0.0),
    loss=dict(type='CrossEntropyLoss', target='seg'),
    postprocess=dict(type='SegmentPost', target='seg'),
)

tile = dict(type='LidarTiles', tile='b9', points=2048)
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
