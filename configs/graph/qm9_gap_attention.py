# QM9 HOMO-LUMO gap regression, attention-only ablation of qm9_gap_gps.py: the same data, encoders,
# 4 layers of full attention (4 heads) at hidden 64, head, loss, schedule and CPU budget, and no
# message passing; GINE's parameters go into the FFN (ratio 3 instead of 2), so the model matches
# GPS's size within 1%. Bonds enter only through RWSE (a structural encoding of the bond graph): no
# layer reads edge features, so the stem has no edge encoder.
# Metric: MAE in meV.
#
#   .venv/bin/python tools/train.py configs/graph/qm9_gap_attention.py
#
# CPU budget: at most 15 minutes of training, as qm9_gap_gps.py (this model's step is faster).
_base_ = ['../_base_/default_runtime.py']

epochs = 3
gap_mean, gap_std = 6860.143, 1284.080  # meV, QM9 training split

model = dict(
    type='TaskModel',
    adapter=dict(type='GraphStem', dim=64,
                 node_encoder=dict(type='AtomEncoder'),
                 edge_encoder=None,  # no layer reads edge features
                 pe=[dict(type='RWSEEncoder', steps=20, dim=16)]),
    backbone=dict(type='IsotropicBackbone', depth=4, out_norm=None, blocks=dict(
        global_=dict(type='FullAttention', heads=4),
        norm='BatchNorm',
        ffn=dict(type='Mlp', ratio=3.0, act='ReLU'))),  # GINE's parameters, reinvested
    head=dict(type='RegressionHead', num_targets=1, hidden=[32, 16], target_mean=gap_mean, target_std=gap_std),
    loss=dict(type='RegressionLoss', kind='l1', target_std=gap_std),
)

qm9 = dict(type='QM9', targets=('gap',), energy_unit='meV')
train_dataloader = dict(
    batch_size=128,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(qm9, split='train', transforms=[dict(type='RWSE', steps=20)]),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(qm9, split='val', transforms=[dict(type='RWSE', steps=20)]),
)
test_dataloader = dict(val_dataloader, dataset=dict(qm9, split='test', transforms=[dict(type='RWSE', steps=20)]))
val_evaluator = dict(type='RegressionMetric', names=['gap_meV'])
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-5), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=300),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=epochs)
val_cfg = dict()
test_cfg = dict()
