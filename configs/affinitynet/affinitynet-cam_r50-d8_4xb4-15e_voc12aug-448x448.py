# Stage 1 with a dilated ResNet-50 (output stride 8), as in IRN (CVPR 2019).
_base_ = './affinitynet-cam_resnet38d_4xb4-15e_voc12aug-448x448.py'
# its own hand-overs (CAM files, work dir) beside the ResNet-38 ones
handover_root = 'work_dirs/affinitynet_r50'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNetV1c',
        depth=50,
        num_stages=4,
        out_indices=(3, ),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        frozen_stages=1,
        contract_dilation=True,
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://resnet50_v1c')),
    cam_head=dict(in_channels=2048))
