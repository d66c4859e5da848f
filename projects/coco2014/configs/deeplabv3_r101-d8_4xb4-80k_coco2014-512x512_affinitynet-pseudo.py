# Stage 5 on MS-COCO 2014: mmseg's DeepLabV3 (ResNet-101) trained on the
# AffinityNet pseudo labels of train2014 (handovers.pseudo_rw_crf) and tested
# on the real val2014 masks (81 classes).
#   train: tools/dist_train.sh THIS_CONFIG 4
#   test:  tools/dist_test.sh THIS_CONFIG WORK_DIR_OR_CKPT 4
# [mmseg] = mmseg's recipe, kept from the VOC config; [convention] = the
# usual COCO setting; [ours] = our choice.
_base_ = [
    '../../../configs/affinitynet/'
    'deeplabv3_r101-d8_4xb4-40k_voc12aug-512x512_affinitynet-pseudo.py',
    './_base_/coco2014.py'
]
handover_root = {{_base_.coco_handover_root}}
# 81 classes (background + 80): both heads.
model = dict(
    decode_head=dict(num_classes=81), auxiliary_head=dict(num_classes=81))
# [mmseg] crop 512, random rescale 0.5-2 of (2048, 512), flip, photometric
# distortion (mmseg's VOC and COCO-Stuff pipelines are the same).
train_dataloader = dict(
    dataset=dict(
        data_root={{_base_.coco_data_root}},
        data_prefix=dict(img_path='train2014'),
        img_suffix='.jpg',
        ann_file='ImageSets/train2014.txt',
        metainfo={{_base_.coco_metainfo}}))
# [convention] tested on val2014 (every COCO WSSS paper), single scale
# ([mmseg] short side 512, whole image).
test_dataloader = dict(
    dataset=dict(
        _delete_=True, pipeline={{_base_.test_pipeline}}, **_base_.coco_val))
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
# [ours] no validation during training (40K images each time); the test
# run scores the last checkpoint.
val_dataloader = None
val_evaluator = None
val_cfg = None
# [convention] 80k iterations at batch 16, mmseg's COCO-Stuff164k DeepLabV3
# schedule (VOC: 40k); [mmseg] SGD lr 0.01, poly.
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=0,
        end=80000,
        by_epoch=False)
]
train_cfg = dict(max_iters=80000, val_interval=80000)
default_hooks = dict(checkpoint=dict(interval=8000))
