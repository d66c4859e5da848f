# AffinityNet's data. Training: train_aug images with the confident-region
# maps of stage 2 (written by the CAM test run) as labels. Testing
# (stage 4): the train images with their stage-1 CAMs, which AffinityNet
# walks; the walk's labels are scored and written as pseudo labels.
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
# Stage 4: each test image comes with its CAM file; AffinityNet walks it
# (model.test_cfg) and RandomWalkHook writes the labels. CAM, RW (the
# model's pred_sem_seg) and RW + dCRF (the hook's files) in one table.
rw_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='LoadCAMs', cam_dir='{handovers.cams}'),
    dict(type='PackSegInputs', meta_keys={{_base_.meta_keys}}),
]
test_dataloader = dict(dataset=dict(pipeline=rw_test_pipeline))
test_evaluator = dict(
    _delete_=True,
    type='PseudoLabelMetric',
    cam_bg_threshold='{handovers.cam_bg_threshold}',
    pred_name='RW',
    label_dirs={'RW+dCRF': '{handovers.pseudo_rw_crf}'})
custom_hooks = [
    dict(
        type='RandomWalkHook',
        out_dir='{handovers.pseudo_rw}',
        crf_out_dir='{handovers.pseudo_rw_crf}',
        # the paper's dCRF at the reference values; dict(type='PAR') for
        # the pixel-adaptive refiner (mmaff.models.refiners)
        refiner=dict(type='DenseCRF'),
        num_workers=2)  # the dCRF runs in worker processes
]
