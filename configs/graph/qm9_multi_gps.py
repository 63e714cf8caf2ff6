# QM9, the 12 standard targets at once (as PyG's QM9 benchmark and MPNN/SchNet report them:
# dipole moment, polarisability, HOMO, LUMO, gap, spatial extent, ZPVE, the four atomisation
# energies, heat capacity) with the GPS model of qm9_gap_gps.py, one head output per target. Each
# target is normalised by its training-split mean and std (qm9_target_stats(targets, 'meV')); the
# L1 loss averages the normalised errors. tools/test.py prints MAE and RMSE per target, in the
# target's physical unit (the metric names carry it: energies in meV, mu in debye, alpha in bohr^3,
# r2 in bohr^2, Cv in cal/(mol K)).
#
#   .venv/bin/python tools/train.py configs/graph/qm9_multi_gps.py
#   .venv/bin/python tools/test.py configs/graph/qm9_multi_gps.py work_dirs/qm9_multi_gps/epoch_3.pth
#
# 179,732 parameters; 3 epochs of 860 batches of 128, as the gap configs.
_base_ = ['../_base_/default_runtime.py']

epochs = 3
targets = ('mu', 'alpha', 'homo', 'lumo', 'gap', 'r2', 'zpve', 'U0_atom', 'U_atom', 'H_atom', 'G_atom', 'Cv')
units = ('D', 'a0^3', 'meV', 'meV', 'meV', 'a0^2', 'meV', 'meV', 'meV', 'meV', 'meV', 'cal/(mol K)')
# training-split statistics, qm9_target_stats(targets, 'meV')
target_mean = [2.671, 75.293, -6535.153, 324.996, 6860.143, 1189.251, 4058.899, -76142.209, -76606.928, -77044.849,
               -70861.134, 31.623]
target_std = [1.501, 8.166, 597.522, 1273.932, 1284.08, 279.876, 900.578, 10310.409, 10401.751, 10475.744, 9486.086,
              4.061]

model = dict(
    type='TaskModel',
    adapter=dict(type='GraphStem', dim=64,
                 node_encoder=dict(type='AtomEncoder'),
                 edge_encoder=dict(type='BondEncoder'),
                 pe=[dict(type='RWSEEncoder', steps=20, dim=16)]),
    backbone=dict(type='IsotropicBackbone', depth=4, out_norm=None, blocks=dict(
        local=dict(type='GINE'),
        global_=dict(type='FullAttention', heads=4),
        composition='parallel',
        norm='BatchNorm',
        ffn=dict(type='Mlp', ratio=2.0, act='ReLU'))),
    head=dict(type='RegressionHead', num_targets=len(targets), hidden=[32, 16], target_mean=target_mean,
              target_std=target_std),
    loss=dict(type='RegressionLoss', kind='l1', target_std=target_std),
)

qm9 = dict(type='QM9', targets=targets, energy_unit='meV')
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
val_evaluator = dict(type='RegressionMetric', names=[f'{t} [{u}]' for t, u in zip(targets, units)],
                     target_std=target_std)  # overall: stdMAE, the mean of MAE / std over the targets
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-5), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=300),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=epochs)
val_cfg = dict()
test_cfg = dict()
