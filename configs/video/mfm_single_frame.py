# Moving Fashion-MNIST, 8 directions of motion (see mfm_local_global.py for the data and the budget):
# the SINGLE-FRAME baseline. mfm_local_global.py's model (neighbourhood attention + SS2D in every
# block) on ONE frame per clip: a random frame in training, the middle one in val, frames 4 and 12
# x 3 crops in test (6 views, probabilities averaged as for the clip models). Tubelets of 1x4x4 make
# a (1, 8, 8) grid. The item's place in one frame is uniform whatever its direction (the canvas
# wraps around) and items are drawn independently of the label, so this model should stay at chance
# (12.5%): what the clip models gain over it is what they read from the motion.
#
#   .venv/bin/python tools/train.py configs/video/mfm_single_frame.py
# 816,932 parameters (the six video models are within 5% of each other in size); 0.20-0.27 s a step at one
# thread beside two other trainings, about 4-5 min a run (1,000 steps).
_base_ = ['../_base_/default_runtime.py']

epochs = 2
classes = 8

model = dict(
    type='TaskModel',
    adapter=dict(type='TubeletStem', in_chans=3, dim=64, patch=(1, 4, 4)),  # one frame: a (1, 8, 8) grid
    backbone=dict(type='Backbone', drop_path_rate=0.1, stages=[
        dict(dim=64, depth=2, blocks=dict(local=dict(type='NeighborhoodAttention', heads=2, kernel=3, rank=3),
                                          global_=dict(type='SS2D', d_state=16, expand=1, rank=3),
                                          ffn=dict(type='Mlp', ratio=4.0))),
        dict(dim=128, depth=2, blocks=dict(local=dict(type='NeighborhoodAttention', heads=4, kernel=3, rank=3),
                                           global_=dict(type='SS2D', d_state=16, expand=1, rank=3),
                                           ffn=dict(type='Mlp', ratio=4.0))),
    ]),
    head=dict(type='ClsHead', num_classes=classes, drop=0.1),
    loss=dict(type='CrossEntropyLoss', label_smoothing=0.1),
    tta=dict(type='MultiViewTTA', sample_dims=4, average='prob'),  # the test loader's 2 frames x 3 crops
)

mfm = dict(type='MovingFashionMNIST')
norm = dict(type='NormalizeClip', mean=(0.053,), std=(0.175,))  # the training clips' pixel statistics
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(mfm, split='train', sampler=dict(type='DenseSampler', clip_len=1), transforms=[
        dict(type='ResizeClip', scale=36), dict(type='RandomCropClip', size=32),
        dict(type='FlipClip', p=0.5, flip_label=(4, 3, 2, 1, 0, 7, 6, 5)), norm, dict(type='PackClip')]),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(mfm, split='val', sampler=dict(type='DenseSampler', clip_len=1, test_mode=True),
                 transforms=[dict(type='ResizeClip', scale=36), dict(type='CenterCropClip', size=32), norm,
                             dict(type='PackClip')]),
)
test_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(mfm, split='test',
                 sampler=dict(type='DenseSampler', clip_len=1, num_clips=2, test_mode=True),
                 transforms=[dict(type='ResizeClip', scale=36), dict(type='ThreeCropClip', size=32), norm,
                             dict(type='PackClip')]),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
