# Semantic segmentation of generated point-cloud scenes (glocal.modalities.points.PointScenes: CGAL's
# real meshes of 8 classes with held-out test meshes (bear, elephant, knot, cube, sphere, gear, anchor,
# cylinder), 3-5 of them (radius 0.5-0.9 m) on 5 x 5 m of uneven ground with 3-6 clutter boxes and
# balls, gaps and sensor noise; about 5,000 points a scene (an object gets 300-500), labelled ground /
# the object's class / clutter; test scenes use the held-out meshes). 200 / 20 / 40 scenes, whole
# scenes in training (random z rotation, scale, jitter), validation and test.
# Metric: mIoU over the classes present, overall accuracy, per-class IoU.
#
#   .venv/bin/python tools/train.py configs/points/scenes_local_global.py
#
# Model: the small PTv3 U-Net (encoder depths 1-1-2-1, channels 32-64-128-256, decoder 1-1-1 back to
# 32 channels at full resolution; grid pooling x2 between stages), every block xCPE -> serialized
# patch attention (128 points along a z-order / Hilbert curve) -> a bidirectional scan along the
# same curve over the whole scene -> MLP; a per-point linear classifier. Grid 6 cm. Budget: 4 epochs
# of 200 scenes, batch 2: 400 steps (about 15 min at one thread beside another run; scenes_local.py
# about 7). 6,142,602 parameters. Ablations at matched size (within 10%): scenes_local.py, scenes_global.py.
_base_ = ['../_base_/default_runtime.py']

epochs = 4
classes = ('ground', 'bear', 'elephant', 'knot', 'cube', 'sphere', 'gear', 'anchor', 'cylinder', 'clutter')

model = dict(
    type='TaskModel',
    adapter=dict(type='PointStem', in_dim=6),
    backbone=dict(type='PointTransformerV3', in_dim=6, grid_size=0.06, stride=(2, 2, 2), enc_depths=(1, 1, 2, 1),
                  enc_channels=(32, 64, 128, 256), enc_heads=(2, 4, 8, 16), enc_patch=128, dec_depths=(1, 1, 1),
                  dec_channels=(32, 64, 128), dec_heads=(2, 4, 8), dec_patch=128, mlp_ratio=4.0, drop_path_rate=0.1,
                  bn_momentum=0.1,  # BatchNorm statistics that keep up with a short schedule
                  local=dict(type='SerializedAttention'),
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
