# Stage 1: ResNet-38 (output stride 8) + CAM head, the paper's classifier.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='CAMClassifier',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNet38d',
        norm_eval=True,
        frozen_stages=1,
        init_cfg=dict(
            type='Pretrained',
            # ImageNet weights of the authors' ResNet-38, converted with
            # tools/model_converters/resnet38d_mxnet2mmaff.py
            checkpoint='checkpoints/resnet38d_imagenet_mmaff.pth')),
    cam_head=dict(
        type='CAMHead', in_channels=4096, num_classes=20,
        dropout_ratio=0.5),
    test_cfg=dict(scales=(1.0, 0.5, 1.5, 2.0), flip=True, bg_threshold=0.2))
