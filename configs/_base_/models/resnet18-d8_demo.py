# The demo's small backbone, shared by its three stages: a dilated
# ResNet-18 with 16 base channels (output stride 8; outputs of stages 2-4,
# all at stride 8, for AffinityNet's taps; the CAM and FCN heads take the
# last), trained from scratch on 2 CPU cores.
model = dict(
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255),
    backbone=dict(
        type='ResNetV1c',
        depth=18,
        stem_channels=16,
        base_channels=16,
        num_stages=4,
        out_indices=(1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        contract_dilation=True,
        norm_cfg=dict(type='BN', requires_grad=True)))
