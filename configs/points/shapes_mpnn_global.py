# Shape classification (see shapes_local_global.py for the data, the budget and the metric) with the
# kNN message-passing local encoder in place of serialized patch attention: each block xCPE -> GINE
# over each point's 16 nearest points at that level (relative positions as edge features; the graph
# rebuilt after every grid pooling) -> the bidirectional scan along the serialization curve -> MLP.
# The MPNN alternative of the model list, at the size of shapes_local_global.py.
#
#   .venv/bin/python tools/train.py configs/points/shapes_mpnn_global.py
# 5,017,908 parameters (shapes_local_global.py: 5,016,084).
_base_ = ['../_base_/default_runtime.py']

epochs = 8
classes = 20

model = dict(
    type='TaskModel',
    adapter=dict(type='PointStem', in_dim=3),
    backbone=dict(type='PointTransformerV3', in_dim=3, grid_size=0.08, stride=(2, 2, 2), enc_depths=(1, 1, 2, 1),
                  enc_channels=(32, 64, 128, 256), enc_heads=(2, 4, 8, 16), enc_patch=128, dec_depths=(),
                  mlp_ratio=4.0, drop_path_rate=0.1, bn_momentum=0.1,
                  local=dict(type='KnnGINE', k=16, mlp_ratio=2.0),
                  global_=dict(type='Mamba', direction='order_bidirectional')),
    head=dict(type='ClsHead', num_classes=classes, drop=0.1),
    loss=dict(type='CrossEntropyLoss', label_smoothing=0.1),
)

shapes = dict(type='ShapeClassification', points=512)
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(shapes, split='train', transforms=[
        dict(type='RandomScale', scale=(0.9, 1.1)), dict(type='RandomJitter', sigma=0.005, clip=0.02)]),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(shapes, split='val'),
)
test_dataloader = dict(val_dataloader, dataset=dict(shapes, split='test'))
val_evaluator = dict(type='Accuracy', topk=(1,), mean_class=True)  # top1 = overall accuracy; mAcc
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
