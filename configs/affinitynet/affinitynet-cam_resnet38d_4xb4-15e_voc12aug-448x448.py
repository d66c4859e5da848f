# Stage 1 of AffinityNet (CVPR 2018): ResNet-38 classifier -> CAMs.
# Train:  tools/dist_train.sh THIS_CONFIG 4
# Export + score CAMs on VOC train:
#   tools/test.py THIS_CONFIG CKPT    (CAM files: handovers.cams)
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
custom_hooks = [dict(type='CAMExportHook', out_dir='{handovers.cams}')]
