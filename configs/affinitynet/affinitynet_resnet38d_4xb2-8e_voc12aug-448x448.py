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
