# Shape classification of point clouds sampled from CGAL's real meshes (glocal.modalities.points:
# 20 classes, 512 points per cloud, random rotation / scale / noise, half of the clouds partial
# views; the test split has unseen poses and views, and unseen meshes where a class has several).
# Metric: overall accuracy (top-1) and mean class accuracy.
#
#   .venv/bin/python tools/train.py configs/points/shapes_local_global.py
#   .venv/bin/python tools/test.py configs/points/shapes_local_global.py work_dirs/shapes_local_global/epoch_8.pth
#
# Model: PTv3's encoder (Wu et al., CVPR 2024; Pointcept's classification mode: no decoder) at a
# CPU size: a sparse-convolution embedding of xyz on a 0.08 grid (about one point per voxel for
# 1,024 points on a unit-sphere-sized shape, so that every grid pooling merges points: on a 0.02
# grid the deep stages kept ~800 of the 1,024 points and a step took 4.6x as long), four stages
# (depths 1-1-2-1, channels 32-64-128-256, grid pooling x2 between them), every block xCPE -> serialized patch
# attention (128 consecutive points along one of the z-order / Hilbert curves, the curve changing
# from block to block) -> a bidirectional selective scan along the same curve over the whole cloud
# -> MLP; masked mean pooling and a linear classifier. Ablations at matched size (within 10%):
# shapes_local.py (patch attention only), shapes_global.py (the scan only).
# Budget (the same for the three): 8 epochs of 2,000 clouds of 512 points, batch 16, about 15 min at
# one thread (1,024 points and 20 epochs took 3 s a step, 70 min a run: too long for 3 seeds x 3).
# 5,016,084 parameters.
_base_ = ['../_base_/default_runtime.py']

epochs = 8
classes = 20

model = dict(
    type='TaskModel',
    adapter=dict(type='PointStem', in_dim=3),
    backbone=dict(type='PointTransformerV3', in_dim=3, grid_size=0.08, stride=(2, 2, 2), enc_depths=(1, 1, 2, 1),
                  enc_channels=(32, 64, 128, 256), enc_heads=(2, 4, 8, 16), enc_patch=128, dec_depths=(),
                  mlp_ratio=4.0, drop_path_rate=0.1, bn_momentum=0.1,
                  local=dict(type='SerializedAttention'),
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
