# Stage 3 of AffinityNet (CVPR 2018): learn affinities from confident
# regions. Needs the stage-2 maps (handovers.conf).
_base_ = [
    '../_base_/models/affinitynet_resnet38d.py',
    '../_base_/datasets/voc12aug_confident_regions.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_aff_8e.py',
    '../_base_/handovers.py'
]
val_dataloader = None
val_evaluator = None
val_cfg = None

# Stage 4: the random walk (test side). With the stage-1 CAMs exported:
#   tools/dist_test.sh THIS_CONFIG AFFINITYNET_CKPT 4
# writes pseudo_rw/<id>.png (CAM + RW) and pseudo_rw_crf/<id>.png (CAM + RW +
# dCRF), skipping finished images, and scores CAM, RW and RW+dCRF on the
# 1,464 VOC train images. For stage 5, label train_aug instead:
#   --cfg-options \
#     test_dataloader.dataset.ann_file=ImageSets/Segmentation/trainaug.txt \
#     test_dataloader.dataset.data_prefix.seg_map_path=SegmentationClassAug
# Inputs and outputs are hand-overs (configs/_base_/handovers.py).
# Pad each test image right/bottom to a multiple of 8 (size_divisor above
# only applies to training batches); the walk: background power 16,
# affinity power beta 8, t = 256 steps (the paper).
model = dict(
    data_preprocessor=dict(test_cfg=dict(size_divisor=8)),
    test_cfg=dict(alpha=16, beta=8, steps=256))
# One image per batch at its own size; round_up=False: under dist_test.sh
# every image goes to exactly one rank (the base's test dataloader).
test_dataloader = dict(num_workers=2, persistent_workers=False)
