# Stage 5 on the demo set: a small mmseg EncoderDecoder (dilated ResNet-18
# + FCN head) trained on the random-walk + dCRF pseudo labels of the train
# images and evaluated on the real masks of the val images. With no
# ImageNet weights on the demo machine, the backbone starts from the demo's
# stage-1 classifier (the VOC configs start from ImageNet, as the paper).
# Longer than ~60 lines because it is the whole stage in one file: mmseg's
# segmentation bases carry VOC's data paths, crop and 20k+ schedules, and
# overriding them item by item would be longer than stating them.
_base_ = [
    '../_base_/models/resnet18-d8_demo.py', './_base_demo_runtime.py'
]
data_root = 'data/demo'
metainfo = dict(
    classes=('background', 'dots', 'stripes', 'rings', 'checks', 'cross'))
crop_size = (112, 112)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        # the stage-1 classifier's backbone: a work dir stands for the
        # checkpoint it saved last (the pipeline passes its own)
        init_cfg=dict(
            type='Pretrained',
            checkpoint='{handovers.cam_work_dir}',
            prefix='backbone.')),
    decode_head=dict(
        type='FCNHead',
        in_channels=128,
        in_index=2,
        channels=64,
        num_convs=2,
        dilation=6,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=6,
        norm_cfg=dict(type='BN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(128, 128),
        ratio_range=(0.75, 1.25),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,  # 8 x 1.5k crops: keeps `make demo` under 20 min
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='PseudoLabelDataset',
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(img_path='JPEGImages'),
        label_dir='{handovers.pseudo_rw_crf}',
        ann_file='ImageSets/Segmentation/trainaug.txt',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type='VOCImageLabelDataset',
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
max_iters = 1500
# (evaluated by the pipeline's seg_test stage)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.002, weight_decay=0.01))
param_scheduler = [
    dict(
        type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters,
        by_epoch=False)
]
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters + 1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=500,
        max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
# a head whose num_classes differs from the data fails before training
custom_hooks = [dict(type='NumClassesCheckHook')]
