# Keyword spotting, unseen voices (see kws_conformer.py for the data): the GLOBAL-only ablation: 6
# layers of full self-attention over the utterance and an FFN widened to match the size; no
# convolution. Attention alone cannot see frame order, so the stem adds sinusoidal positions.
#
#   .venv/bin/python tools/train.py configs/audio/kws_global.py
# 2,108,644 parameters (the five speech models are within 1% of each other in size).
_base_ = ['../_base_/default_runtime.py']

epochs = 6
words = 20

model = dict(
    type='TaskModel',
    adapter=dict(type='SubsampleStem', in_bins=80, dim=144, channels=64, dropout=0.1, pos_enc='sinusoidal'),
    backbone=dict(type='IsotropicBackbone', in_dim=144, depth=6, blocks=dict(
        global_=dict(type='FullAttention', heads=4, attn_drop=0.1, proj_drop=0.1),
        ffn=dict(type='Mlp', hidden=800, act='SiLU', drop=0.1))),
    head=dict(type='ClsHead', num_classes=words, drop=0.1),
    loss=dict(type='CrossEntropyLoss', label_smoothing=0.1),
)

kws = dict(type='KeywordSpotting', per_word=dict(train=300, val=20, test=50))
features = [dict(type='Fbank', num_mel_bins=80), dict(type='UtteranceNorm')]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(kws, split='train', transforms=features + [
        dict(type='SpecAugment', freq_masks=2, freq_width=15, time_masks=2, time_width=0.05)]),
)
val_dataloader = dict(
    batch_size=100,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(kws, split='val', transforms=features),
)
test_dataloader = dict(val_dataloader, dataset=dict(kws, split='test', transforms=features))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=300),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
