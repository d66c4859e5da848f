# AffinityNet training data: train_aug images with the confident-region
# maps of stage 2 (tools/make_confident_regions.py) as labels.
_base_ = ['./voc12aug_image_labels.py']
aff_crop_size = (448, 448)
# Paper: crop 448, flip, colour jitter, no rescale.
aff_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=aff_crop_size),
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
    batch_size=2,
    dataset=dict(
        _delete_=True,
        type='PseudoLabelDataset',
        data_root={{_base_.data_root}},
        data_prefix=dict(img_path='JPEGImages'),
        label_dir='{handovers.conf}',
        ann_file='ImageSets/Segmentation/trainaug.txt',
        pipeline=aff_train_pipeline))
# Stage 2 (tools/make_confident_regions.py --config THIS_CONFIG): CAM files
# of stage 1 -> confident-region maps, over train_aug (the hand-overs of
# configs/_base_/handovers.py).
confident_regions = dict(
    cam_dir='{handovers.cams}',
    out_dir='{handovers.conf}',
    alpha_low=4,
    alpha_high=24,  # the CVPR paper; the authors' released models: 32
    crf=dict(
        iterations=10,
        gauss_sxy=3,
        gauss_compat=3,
        bilateral_sxy=80,
        bilateral_srgb=13,
        bilateral_compat=10),
    dataset=dict(
        type={{_base_.dataset_type}},
        data_root={{_base_.data_root}},
        data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
        ann_file='ImageSets/Segmentation/trainaug.txt',
        label_source='xml'))
