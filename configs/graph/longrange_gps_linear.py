# The long-range node task, GraphGPS with its global mixer swapped for linear attention (Katharopoulos
# et al. 2020, elu + 1 feature maps, O(N)): otherwise longrange_gps.py.
#
#   .venv/bin/python tools/train.py configs/graph/longrange_gps_linear.py
#
# CPU budget: as longrange_gps.py, well inside 15 minutes on 2 CPU threads.
_base_ = ['../_base_/default_runtime.py']

depth = 6  # message-passing layers of the model = the task's depth
colors = 4
epochs = 12

model = dict(
    type='TaskModel',
    adapter=dict(type='GraphStem', dim=64,
                 node_encoder=dict(type='EmbeddingEncoder', num_embeddings=1 + 2 * colors),  # plain, key, distractor
                 edge_encoder=None, pe=None),
    backbone=dict(type='IsotropicBackbone', depth=depth, out_norm=None, blocks=dict(
        local=dict(type='GINE'),
        global_=dict(type='LinearAttention', heads=4),
        composition='parallel',
        norm='BatchNorm',
        ffn=dict(type='Mlp', ratio=2.0, act='ReLU'))),
    head=dict(type='TokenHead', num_classes=colors),  # per-node logits
    loss=dict(type='CrossEntropyLoss', target='node_label'),  # -100: unlabelled (within `depth` hops of the key)
    postprocess=dict(type='SegmentPost', target='node_label'),
)

longrange = dict(type='LongRangeNodes', nodes=(40, 80), depth=depth, colors=colors, distractors=2)
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(longrange, split='train', num_graphs=2000),
)
val_dataloader = dict(
    batch_size=100,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(longrange, split='val', num_graphs=500),
)
test_dataloader = dict(val_dataloader, dataset=dict(longrange, split='test', num_graphs=500))
val_evaluator = dict(type='IoUMetric', num_classes=colors)  # aAcc: accuracy over the labelled nodes
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-5), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=4)
val_cfg = dict()
test_cfg = dict()
