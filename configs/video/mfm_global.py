# Moving Fashion-MNIST, 8 directions of motion (see mfm_local_global.py for the data, the clips, the
# multi-view test and the budget): the GLOBAL-only ablation. The same two-stage model with SS2D, the
# selective scan over the whole (T, H, W) token grid (VMamba's cross-scan, 6 directions: along T, H
# and W, each both ways; d_state 16, expand 1), and no neighbourhood attention; the MLPs are wider
# (ratio 6) to keep the size matched. SS2D keeps VMamba's 3x3x3 depthwise convolution before the
# scan: the scan itself is the only mixer that reaches past a token's neighbours.
#
#   .venv/bin/python tools/train.py configs/video/mfm_global.py
# 816,968 parameters (the six video models are within 5% of each other in size); 0.49-0.51 s a step at one
# thread beside two other trainings, about 8-9 min a run (1,000 steps).
_base_ = ['../_base_/default_runtime.py']

epochs = 2
classes = 8

model = dict(
    type='TaskModel',
    adapter=dict(type='TubeletStem', in_chans=3, dim=64, patch=(2, 4, 4)),  # 1x2x2 patch merging between stages
    backbone=dict(type='Backbone', drop_path_rate=0.1, stages=[
        dict(dim=64, depth=2, blocks=dict(global_=dict(type='SS2D', d_state=16, expand=1, rank=3),
                                          ffn=dict(type='Mlp', ratio=6.0))),  # the attention's parameters in the MLPs
        dict(dim=128, depth=2, blocks=dict(global_=dict(type='SS2D', d_state=16, expand=1, rank=3),
                                           ffn=dict(type='Mlp', ratio=6.0))),
    ]),
    head=dict(type='ClsHead', num_classes=classes, drop=0.1),
    loss=dict(type='CrossEntropyLoss', label_smoothing=0.1),
    tta=dict(type='MultiViewTTA', sample_dims=4, average='prob'),  # the test loader's 6 views per clip
)

mfm = dict(type='MovingFashionMNIST')
norm = dict(type='NormalizeClip', mean=(0.053,), std=(0.175,))  # the training clips' pixel statistics
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(mfm, split='train', sampler=dict(type='DenseSampler', clip_len=8, frame_interval=2), transforms=[
        dict(type='ResizeClip', scale=36), dict(type='RandomCropClip', size=32),
        dict(type='FlipClip', p=0.5, flip_label=(4, 3, 2, 1, 0, 7, 6, 5)), norm, dict(type='PackClip')]),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(mfm, split='val', sampler=dict(type='DenseSampler', clip_len=8, frame_interval=2, test_mode=True),
                 transforms=[dict(type='ResizeClip', scale=36), dict(type='CenterCropClip', size=32), norm,
                             dict(type='PackClip')]),
)
test_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(mfm, split='test',
                 sampler=dict(type='DenseSampler', clip_len=8, frame_interval=2, num_clips=2, test_mode=True),
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
