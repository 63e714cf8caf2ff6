# NAT-Mini (Hassani et al., CVPR 2023): dim 64, depths 3-4-6-5, heads 2-4-8-16, kernel 7,
# mlp ratio 3. About 20 M parameters, 2.7 G MACs at 224.
#
# ImageNet-1k classification, 224x224. ImageNet is not shipped offline: point the two roots at an
# ImageFolder copy (root/<class>/<image>) to train; the model builds and runs without it:
#   .venv/bin/python tools/summary.py configs/image/nat_mini_in1k.py --input-shape 1,3,224,224
_base_ = ['../_base_/default_runtime.py']

num_classes = 1000
epochs = 300
data_root = 'data/imagenet'

model = dict(
    type='Classifier',
    data_preprocessor=dict(type='ImageDataPreprocessor', mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    adapter=dict(type='ConvStem', in_chans=3, dims=(32, 64), strides=(2, 2), norm=None, act='Identity', norm_last='LayerNorm'),
    backbone=dict(type='nat_mini', drop_path_rate=0.2),
    head=dict(type='ClsHead', num_classes=num_classes),
    loss=dict(type='CrossEntropyLoss', label_smoothing=0.1),
)

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(type='ImageFolder', root=data_root + '/train', mode='RGB', transforms=[
        dict(type='RandomResizedCrop', size=224),
        dict(type='RandomFlip', p=0.5),
        dict(type='PackInputs'),
    ]),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(type='ImageFolder', root=data_root + '/val', mode='RGB', transforms=[
        dict(type='Resize', size=256),
        dict(type='CenterCrop', size=224),
        dict(type='PackInputs'),
    ]),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=0.001, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=20, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
