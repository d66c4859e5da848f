# Stage 1 of AffinityNet (CVPR 2018): ResNet-38 classifier -> CAMs.
# Train:  tools/dist_train.sh THIS_CONFIG 4
# Export + score CAMs (handovers.cams) and stage 2's confident regions
# (handovers.conf) on VOC train (train_aug: see the pipeline config):
#   tools/test.py THIS_CONFIG WORK_DIR_OR_CKPT
_base_ = [
    '../_base_/models/cam_resnet38d.py',
    '../_base_/datasets/voc12aug_image_labels.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_cam_15e.py',
    '../_base_/handovers.py'
]
# Every training crop is padded to 448 x 448 (as the authors' random crop
# does); test images keep their own size.
crop_size = (448, 448)
model = dict(data_preprocessor=dict(size=crop_size))
# Stage 2 in the same pass: confident regions with the background powers
# 4 / 24 (the CVPR paper; the authors' released models: 32) and the
# reference dCRF (mmaff.ops.dense_crf's defaults), in 8 worker processes.
# (refiner=dict(type='PAR') refines with PAR instead; device='cuda' on a
# GPU, with num_workers=0.)
custom_hooks = [
    dict(type='CAMExportHook', out_dir='{handovers.cams}'),
    dict(
        type='ConfidentRegionHook',
        out_dir='{handovers.conf}',
        alpha_low=4,
        alpha_high=24,
        refiner=dict(type='DenseCRF'),
        num_workers=8)
]
test_evaluator = [
    dict(type='CAMMetric'),
    dict(type='ConfidentRegionMetric', conf_dir='{handovers.conf}')
]
