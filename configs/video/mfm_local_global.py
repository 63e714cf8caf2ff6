# Moving Fashion-MNIST (glocal.modalities.video.MovingFashionMNIST): which of 8 directions does a
# Fashion-MNIST item move in, across a 64x64 canvas that wraps around, over 16 frames? The label is
# the motion only: a single frame is at chance (12.5%). 8,000 / 1,000 / 2,000 generated clips (val
# and test items unseen in training), real mp4s read back through decord; made once (about half a
# minute on one core) and cached under ~/.cache/glocal/data/video. Metric: top-1 accuracy.
#
#   .venv/bin/python tools/train.py configs/video/mfm_local_global.py
#   .venv/bin/python tools/test.py configs/video/mfm_local_global.py work_dirs/mfm_local_global/epoch_2.pth
#   .venv/bin/python tools/infer.py configs/video/mfm_local_global.py work_dirs/mfm_local_global/epoch_2.pth clip.mp4
#
# Clips: 8 frames 2 apart (the 16 frames' even or odd ones: a random one of the two in training),
# resized to 36x36, a random 32x32 crop and a horizontal flip that mirrors the label. Val: the odd
# frames' centre crop. Test (mmaction2-style multi-view): 2 clips (even and odd frames) x 3 crops
# (ThreeCropClip) = 6 views per video, class probabilities averaged (MultiViewTTA, 'prob').
#
# Model: tubelets of 2x4x4 (TubeletStem, dim 64) -> a (4, 8, 8) token grid; two stages (dims 64-128,
# depths 2-2, 1x2x2 patch merging between them: (4, 4, 4)), every block LOCAL + GLOBAL in sequence:
# 3x3x3 neighbourhood attention (NAT's, rank 3) -> SS2D over the (T, H, W) grid (VMamba's selective
# scan, 6 directions, a 3x3x3 depthwise convolution inside; d_state 16, expand 1 for CPU cost) ->
# MLP; masked mean pooling and a linear classifier.
# Ablations at matched size (within 10%): mfm_local.py (neighbourhood attention only), mfm_global.py
# (the scan only), mfm_single_frame.py (this model on one frame: the chance baseline), and two
# published structures at CPU size: mfm_video_swin.py (shifted 3D windows) and mfm_uniformer.py
# (3D convolution-like aggregators, then full spatiotemporal attention).
# Budget (the same for all): 2 epochs of 8,000 clips, batch 16: 500 steps an epoch, 1,000 in all.
# Measured at one thread (OMP_NUM_THREADS=1) on the 2-core machine while two other trainings ran:
# 0.63-0.74 s a step (0.08 s of it decoding), about 11-13 min a run with the two val passes; the
# 6-view test of 2,000 clips takes about 2.5 min more. (3 epochs would take 17-19 min.)
# 820,004 parameters (the six video models are within 5% of each other in size).
_base_ = ['../_base_/default_runtime.py']

epochs = 2
classes = 8

model = dict(
    type='TaskModel',
    adapter=dict(type='TubeletStem', in_chans=3, dim=64, patch=(2, 4, 4)),  # 1x2x2 patch merging between stages
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
