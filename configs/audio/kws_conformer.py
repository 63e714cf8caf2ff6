# Keyword spotting on synthesised speech, unseen voices: 20 words (the digits and yes no up down
# left right on off stop go), espeak-ng and flite voices, the val/test voices never heard in training
# (glocal.modalities.audio.synth: 1,521 / 381 / 381 voices, split by espeak variant and flite voice),
# noise and reverberation in the recordings. The corpus is made once (about 4 minutes on the 2-core
# CPU) and cached under ~/.cache/glocal/data/speech.
#
#   .venv/bin/python tools/train.py configs/audio/kws_conformer.py
#   .venv/bin/python tools/test.py configs/audio/kws_conformer.py work_dirs/kws_conformer/epoch_6.pth
#
# Model: 80-bin Kaldi fbank (per-utterance mean/variance normalised, SpecAugment in training) ->
# Conformer's convolutional subsampling (4x in time; 64 channels, not the model width 144: 4x cheaper,
# the stem was 2/3 of the step at 144) -> 6 Conformer layers (dim 144, 4 heads, FFN
# 288, conv kernel 31) -> masked mean pool -> 20 classes. 2,131,204 parameters. Ablations at matched
# size (within 10%): kws_squeezeformer.py, kws_mamba.py, kws_local.py (convolution module only),
# kws_global.py (attention only, sinusoidal positions in the stem).
_base_ = ['../_base_/default_runtime.py']

epochs = 6
words = 20

model = dict(
    type='TaskModel',
    adapter=dict(type='SubsampleStem', in_bins=80, dim=144, channels=64, dropout=0.1),
    backbone=dict(type='Conformer', dim=144, depth=6, heads=4, ffn_ratio=2.0, kernel=31),
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
