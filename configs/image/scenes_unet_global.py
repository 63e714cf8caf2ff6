# Dense demo: per-pixel segmentation of "Fashion-MNIST scenes" (64x64 canvases holding 2-4 real
# Fashion-MNIST items, overlapping; 11 classes = background + the 10 item classes). Train canvases
# are made from the train split, test canvases from the test split (glocal.modalities.image.scenes).
#
#   .venv/bin/python tools/train.py configs/image/scenes_unet_local_global.py
#
# The GLOBAL-ONLY ablation of scenes_unet_local_global.py: the same model without the local
# depthwise convolutions in the backbone's blocks (only the global full attention mixes tokens
# there; the conv stem and the decoder are shared by all three scenes configs).
_base_ = ['../_base_/default_runtime.py']

num_classes = 11
epochs = 4
classes = ('background', 'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
           'Sneaker', 'Bag', 'Ankle boot')

model = dict(
    type='TaskModel',
    data_preprocessor=dict(type='ImageDataPreprocessor', mean=(0.13,), std=(0.3,)),
    adapter=dict(type='ConvStem', in_chans=1, dims=(16, 32), strides=(1, 2), norm_last='LayerNorm'),  # 64x64 -> 32x32
    backbone=dict(
        type='Backbone',
        downsample=dict(type='ConvDownsample', norm='LayerNorm'),  # 2x2 stride-2 conv
        stages=[
            dict(dim=32, depth=0, blocks=dict()),  # the stem's 32x32 features, for the decoder
            dict(dim=64, depth=2, blocks=dict(global_=dict(type='FullAttention', heads=2),
                                              ffn=dict(type='Mlp', ratio=3))),
            dict(dim=128, depth=2, blocks=dict(global_=dict(type='FullAttention', heads=4),
                                               ffn=dict(type='Mlp', ratio=3))),
        ]),
    head=dict(type='UNetHead', num_classes=num_classes, dim=32,
              block=dict(local=dict(type='DepthwiseConv', kernel=3), ffn=dict(type='Mlp', ratio=2))),
    loss=dict(type='CrossEntropyLoss', target='seg'),
)

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=True),
    dataset=dict(type='FashionMNISTScenes', split='train', transforms=[
        dict(type='RandomFlip', p=0.5),
        dict(type='PackInputs'),
    ]),
)
val_dataloader = dict(
    batch_size=100,
    num_workers=0,
    sampler=dict(type='SeededSampler', shuffle=False),
    dataset=dict(type='FashionMNISTScenes', split='test', transforms=[dict(type='PackInputs')]),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', num_classes=num_classes, class_names=classes)
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=300),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
