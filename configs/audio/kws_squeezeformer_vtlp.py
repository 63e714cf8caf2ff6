# Keyword spotting, unseen voices: kws_squeezeformer.py with vocal tract length perturbation in
# training (Jaitly & Hinton, 2013): every training utterance's mel filter bank is warped by a factor
# drawn from [0.8, 1.2] (Kaldi's VTLN warp), so each training voice also sounds like speakers with
# shorter or longer vocal tracts. Aimed at the test voice the plain recipe fails on: flite's slt,
# female, when flite's training voices (kal, awb) are male. Validation and test are unwarped.
#
#   .venv/bin/python tools/train.py configs/audio/kws_squeezeformer_vtlp.py
# 2,131,948 parameters, as kws_squeezeformer.py.
_base_ = ['../_base_/default_runtime.py']

epochs = 6
words = 20

model = dict(
    type='TaskModel',
    adapter=dict(type='SubsampleStem', in_bins=80, dim=144, channels=64, dropout=0.1),
    backbone=dict(type='Squeezeformer', dim=144, depth=6, heads=4, ffn_ratio=1.6, kernel=31),
    head=dict(type='ClsHead', num_classes=words, drop=0.1),
    loss=dict(type='CrossEntropyLoss', label_smoothing=0.1),
)

kws = dict(type='KeywordSpotting', per_word=dict(train=300, val=20, test=50))
features = [dict(type='Fbank', num_mel_bins=80), dict(type='UtteranceNorm')]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(kws, split='train', transforms=[
        dict(type='Fbank', num_mel_bins=80, vtlp=(0.8, 1.2)), dict(type='UtteranceNorm'),
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
