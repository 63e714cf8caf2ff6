# CTC character recognition of synthesised sentences, unseen voices: digit strings ("four seven
# one two") and command phrases ("go forward ten meters", "turn left", "don't stop"), espeak-ng and
# flite voices, the val/test voices never heard in training (glocal.modalities.audio.synth: 1,521 /
# 381 / 381 voices), noise and reverberation in the recordings; 4,000 / 200 / 500 sentences, made
# once and cached under ~/.cache/glocal/data/speech. Metric: character and word error rates (CER,
# WER, percent) of greedy CTC decoding.
#
#   .venv/bin/python tools/train.py configs/audio/ctc_global.py
#   .venv/bin/python tools/test.py configs/audio/ctc_global.py work_dirs/ctc_global/epoch_8.pth
#
# Model: the GLOBAL-only ablation (full attention + widened FFN, no convolution; sinusoidal
# positions in the stem) in place of the Conformer of ctc_conformer.py.
# 2,109,949 parameters (the five speech models are within 1% of each other in size).
_base_ = ['../_base_/default_runtime.py']

epochs = 8
vocab = " abcdefghijklmnopqrstuvwxyz'"  # ids 1..28 (CharTokenizer); 0 is the CTC blank

model = dict(
    type='TaskModel',
    adapter=dict(type='SubsampleStem', in_bins=80, dim=144, channels=64, dropout=0.1, pos_enc='sinusoidal'),
    backbone=dict(type='IsotropicBackbone', in_dim=144, depth=6, blocks=dict(
        global_=dict(type='FullAttention', heads=4, attn_drop=0.1, proj_drop=0.1),
        ffn=dict(type='Mlp', hidden=800, act='SiLU', drop=0.1))),
    head=dict(type='TokenHead', num_classes=len(vocab) + 1, drop=0.1),
    loss=dict(type='CTCLoss', target='target'),
    postprocess=dict(type='CTCGreedyDecoder', vocab=['<blank>'] + list(vocab), target='target'),
)

speech = dict(type='SpeechSentences', sizes=dict(train=4000, val=200, test=500))
features = [dict(type='Fbank', num_mel_bins=80), dict(type='UtteranceNorm'), dict(type='EncodeText')]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='BucketBatchSampler', shuffle=True),  # sentences of similar length together
    dataset=dict(speech, split='train', transforms=features + [
        dict(type='SpecAugment', freq_masks=2, freq_width=15, time_masks=2, time_width=0.05)]),
)
val_dataloader = dict(
    batch_size=50,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(speech, split='val', transforms=features),
)
test_dataloader = dict(val_dataloader, dataset=dict(speech, split='test', transforms=features))
val_evaluator = dict(type='ErrorRate')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=300),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
