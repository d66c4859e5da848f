# Stage 3 of AffinityNet (CVPR 2018): learn affinities from confident
# regions. Needs the stage-2 maps in work_dirs/affinitynet/conf.
_base_ = [
    '../_base_/models/affinitynet_resnet38d.py',
    '../_base_/datasets/voc12aug_confident_regions.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_aff_8e.py'
]
val_dataloader = None
val_evaluator = None
val_cfg = None

# Stage 4: the random walk (test side). With the stage-1 CAMs in cam_dir:
#   tools/dist_test.sh THIS_CONFIG AFFINITYNET_CKPT 4
# writes rw_dir/<id>.png (CAM + RW) and rw_crf_dir/<id>.png (CAM + RW +
# dCRF), skipping finished images, and scores CAM, RW and RW+dCRF on the
# 1,464 VOC train images. For stage 5, label train_aug instead:
#   --cfg-options \
#     test_dataloader.dataset.ann_file=ImageSets/Segmentation/trainaug.txt \
#     test_dataloader.dataset.data_prefix.seg_map_path=SegmentationClassAug
# --out DIR writes the RW labels to DIR and the RW+dCRF ones to DIR_crf.
cam_dir = 'work_dirs/affinitynet/cams'
rw_dir = 'work_dirs/affinitynet/pseudo_rw'
rw_crf_dir = 'work_dirs/affinitynet/pseudo_rw_crf'
# Pad each test image right/bottom to a multiple of 8 (size_divisor above
# only applies to training batches).
model = dict(data_preprocessor=dict(test_cfg=dict(size_divisor=8)))
# One image per batch at its own size; round_up=False: under dist_test.sh
# every image goes to exactly one rank (the base's test dataloader).
test_dataloader = dict(num_workers=2, persistent_workers=False)
test_evaluator = dict(
    type='PseudoLabelMetric',
    cam_dir=cam_dir,
    cam_bg_threshold=0.2,
    label_dirs={
        'RW': rw_dir,
        'RW+dCRF': rw_crf_dir
    })
custom_hooks = [
    dict(
        type='RandomWalkHook',
        cam_dir=cam_dir,
        out_dir=rw_dir,
        crf_out_dir=rw_crf_dir,
        alpha=16,
        beta=8,
        steps=256,
        num_workers=2)
]
