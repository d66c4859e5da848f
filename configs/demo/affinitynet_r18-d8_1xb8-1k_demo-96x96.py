# Stages 3-4 on the demo set: a small AffinityNet (dilated ResNet-18 taps at
# stride 8) trained on the confident regions, then the random walk.
# Longer than ~60 lines because mmengine replaces lists wholesale: the
# training pipeline (crop 96 instead of 448) and the stage-4 hook (dCRF at
# the demo's image size) are restated in full.
_base_ = [
    '../_base_/models/resnet18-d8_demo.py',
    '../_base_/datasets/voc12aug_confident_regions.py',
    './_base_demo_runtime.py', '../_base_/schedules/schedule_aff_8e.py'
]
data_root = 'data/demo'
metainfo = dict(
    classes=('background', 'dots', 'stripes', 'rings', 'checks', 'cross'))
model = dict(
    type='AffinityNet',
    # The walk, rescaled to the demo like the confident-region alphas
    # (paper: alpha 16). The demo's stride-8 grid is 14 x 14 (VOC: ~63 x
    # 47), so a few steps already cross the image (paper: 256).
    test_cfg=dict(alpha=2, beta=8, steps=4),
    # padded to a multiple of 8, training batches and test images alike
    data_preprocessor=dict(size_divisor=8, test_cfg=dict(size_divisor=8)),
    aff_head=dict(
        type='AffinityHead',
        in_channels=(32, 64, 128),
        channels=(32, 32, 64),
        out_channels=128,
        radius=5))
aff_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=(96, 96)),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='ColorJitter',
        brightness=0.3,
        contrast=0.3,
        saturation=0.3,
        hue=0.1),
    dict(type='PackSegInputs', meta_keys={{_base_.meta_keys}}),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(img_path='JPEGImages'),
        pipeline=aff_train_pipeline))
max_iters = 1000
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.001, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'aff_head': dict(lr_mult=1.0)}))
param_scheduler = [
    dict(
        type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters,
        by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=100000)
val_dataloader = None
val_evaluator = None
val_cfg = None
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=200, max_keep_ckpts=2))

# Stage 4 (test side): random walk from the demo CAMs, pseudo labels for the
# train images (= trainaug of the demo set), scored against their masks.
# (the base's test split is train, which is the demo's trainaug)
test_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        # the CAM threshold and the walk's settings are chosen on these
        # labelled images; the metric leaves them out of its figures
        holdout_file='ImageSets/Segmentation/holdout.txt'))
custom_hooks = [
    dict(
        type='RandomWalkHook',
        out_dir='{handovers.pseudo_rw}',
        crf_out_dir='{handovers.pseudo_rw_crf}',
        refiner=dict(type='DenseCRF', bilateral_sxy=20),  # 112-px images
        num_workers=0)
]
