# The generated demo set (tools/dataset_converters/make_demo_dataset.py):
# VOC layout, 112x112 images, 5 classes; the demo pipeline generates 800
# train + 100 val images (configs/demo/pipeline_affinitynet_r18-d8_demo.py).
_base_ = ['../_base_/datasets/voc12aug_image_labels.py']
data_root = 'data/demo'
metainfo = dict(
    classes=('background', 'dots', 'stripes', 'rings', 'checks', 'cross'))
crop_size = (112, 112)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(128, 128),
        ratio_range=(0.75, 1.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
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
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='ImageSets/Segmentation/train.txt',
        # labelled images for choosing settings (every 8th training image):
        # the metrics choose on them and leave them out of the figures
        holdout_file='ImageSets/Segmentation/holdout.txt'))
test_dataloader = val_dataloader
