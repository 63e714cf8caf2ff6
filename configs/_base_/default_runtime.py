# Runtime defaults for every glocal config: hooks, logging, checkpoints, environment.
# A config names this as its only base:  _base_ = ['../_base_/default_runtime.py']
# Everything here is local: text logs and TensorBoard under work_dir/<timestamp>/, no accounts.

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    # progress: one line every `interval` iterations with epoch/iter, ETA, lr, time and loss
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # by_epoch follows train_cfg (glocal's build_runner fills it in): interval=1 is every epoch.
    # An iteration-based config (train_cfg by_epoch=False) must set its own interval in iterations.
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # 'auto': resolved at run time to nccl with CUDA, gloo without
    dist_cfg=dict(backend='auto'),
)

visualizer = dict(
    type='Visualizer',
    vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')],
)

log_processor = dict(window_size=20)  # by_epoch follows train_cfg
log_level = 'INFO'

load_from = None
resume = False

# one seed for model init, sampling order and augmentation; glocal restores RNG states on resume
randomness = dict(seed=0, deterministic=False, diff_rank_seed=False)
