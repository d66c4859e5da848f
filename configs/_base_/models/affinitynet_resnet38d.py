# Stage 3: AffinityNet on ResNet-38 (taps: input of stage 5 and 6, final).
model = dict(
    type='AffinityNet',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        size_divisor=8,
        pad_val=0,
        seg_pad_val=255),
    backbone=dict(
        type='ResNet38d',
        out_keys=('b4_act', 'b5_act', 'bn7'),
        norm_eval=True,
        frozen_stages=1,
        init_cfg=dict(
            type='Pretrained',
            # ImageNet weights (better than the stage-1 weights, per the
            # authors), converted by tools/model_converters/
            checkpoint='checkpoints/resnet38d_imagenet_mmaff.pth')),
    aff_head=dict(
        type='AffinityHead',
        in_channels=(512, 1024, 4096),
        channels=(64, 128, 256),
        out_channels=448,
        radius=5))
