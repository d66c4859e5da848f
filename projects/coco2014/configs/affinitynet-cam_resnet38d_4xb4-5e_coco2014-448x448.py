# Stage 1 (+ 2) on MS-COCO 2014: the ResNet-38 CAM classifier of mmaff's VOC
# config with COCO's 80 classes; its test run exports the CAMs
# (handovers.cams) and the confident regions (handovers.conf) of train2014
# and scores both on the converter's masks.
#   train:  tools/dist_train.sh THIS_CONFIG 4
#   export: tools/dist_test.sh THIS_CONFIG WORK_DIR_OR_CKPT 4
# Where each setting comes from: [paper] AffinityNet (CVPR 2018, VOC),
# kept from the VOC config; [convention] the usual WSSS COCO setting of
# IRN-derived code; [ours] our choice, with the reason.
_base_ = [
    '../../../configs/affinitynet/'
    'affinitynet-cam_resnet38d_4xb4-15e_voc12aug-448x448.py',
    './_base_/coco2014.py'
]
handover_root = {{_base_.coco_handover_root}}
# [convention] 80 foreground classes (background is not a CAM class).
model = dict(cam_head=dict(num_classes=80))
# [paper] crop 448, flip, colour jitter, multi-scale (1, 0.5, 1.5, 2) + flip
# CAMs, from the VOC config. [convention] the long side resized to
# U[320, 640] (COCO images have a long side of 640 at most; VOC's
# U[256, 512] is the same ratio range 0.5..1 of VOC's 500).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(640, 640),
        ratio_range=(0.5, 1.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}),
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
    dataset=dict(_delete_=True, pipeline=train_pipeline, **_base_.coco_train))
# CAMs (and confident regions) of every train2014 image: the walk needs
# them all, and all have masks, so one test run exports and scores them
# (VOC needs two: the 1,464 masked train images, then train_aug).
test_dataloader = dict(
    dataset=dict(
        _delete_=True, pipeline={{_base_.test_pipeline}}, **_base_.coco_train))
# [ours] no validation during training: it would be a second CAM export of
# train2014 (82K images, 8 passes each); the test run scores the CAMs.
val_dataloader = None
val_evaluator = None
val_cfg = None
# [convention] 5 epochs at batch 16 (IRN's CAM schedule, also that of its
# COCO ports): 5 x 82,081 / 16 = 25,650 iterations, 2.6x VOC's 9,920;
# [paper] SGD lr 0.1 (x10 head), wd 5e-4, poly 0.9 from the VOC schedule.
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=25650,
        by_epoch=False)
]
train_cfg = dict(max_iters=25650, val_interval=25650)
# [ours] CAM files quantised to uint8 (delta-coded; error <= 1/510): about
# 9x smaller than float16, ~15 GB instead of ~130 GB for train2014 (see
# the project README, "Scale"). The confident-region hook as in the VOC
# config ([paper] alpha 4 / 24, reference dCRF).
custom_hooks = [
    dict(**_base_.custom_hooks[0], dtype='uint8'),
    *_base_.custom_hooks[1:],
]
