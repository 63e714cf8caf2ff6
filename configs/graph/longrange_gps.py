# The long-range node task (glocal.modalities.graph.longrange): ladders of 40-80 nodes, one key node
# with one of 4 colours, 2 coloured distractors; every node more than 6 hops from the key is labelled
# with the key's colour. A local-only model of 6 message-passing layers provably stays at chance
# (25%) on the labelled nodes; global mixing can read the key from anywhere.
#
#   .venv/bin/python tools/train.py configs/graph/longrange_gps.py
#
# GraphGPS: 6 layers of GINE + full attention (4 heads) summed in one residual step, batch norm,
# hidden 64, no positional encoding. Ablations at matched size (within 1%): longrange_gine.py (no
# global mixer), longrange_attention.py (no message passing); the global mixer swapped:
# longrange_gps_linear.py (linear attention), longrange_gps_scan.py (bidirectional scan along a BFS
# node order). Metric: aAcc of IoUMetric = accuracy over the labelled nodes.
# CPU budget: 2,000 training graphs x 12 epochs (756 iterations of 32 graphs), about 3 minutes on
# one thread beside another run (GPS is the slowest of the three; its training loss is ~0 by epoch 4).
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
        global_=dict(type='FullAttention', heads=4),
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
