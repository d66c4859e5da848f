# Stage 5 with mmseg's DeepLabV3+ (ResNet-101) on the AffinityNet pseudo
# labels; evaluated on the real VOC val masks.
_base_ = [
    'mmseg::deeplabv3plus/deeplabv3plus_r101-d8_4xb4-40k_voc12aug-512x512.py',
    '../_base_/handovers.py'
]
default_scope = 'mmaff'
custom_imports = dict(imports=['mmaff'], allow_failed_imports=False)
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='PseudoLabelDataset',
        data_root={{_base_.data_root}},
        data_prefix=dict(img_path='JPEGImages'),
        label_dir='{handovers.pseudo_rw_crf}',
        ann_file='ImageSets/Segmentation/trainaug.txt',
        pipeline={{_base_.train_pipeline}}))
# a head whose num_classes differs from the data fails before training
custom_hooks = [dict(type='NumClassesCheckHook')]
