# The paper's recipe with mmseg's DeepLabV3 (ResNet-101) as the segmentation
# network. It shares work_dir with the ResNet-38 pipeline: stages 1-4 that
# one has finished are skipped, only the segmentation stages run.
#   python tools/run_pipeline.py THIS_CONFIG [--launcher pytorch --gpus 4]
_base_ = './pipeline_affinitynet_resnet38d_voc12aug.py'
seg_config = 'configs/affinitynet/deeplabv3_r101-d8_4xb4-40k_voc12aug-512x512_affinitynet-pseudo.py'  # noqa: E501
seg_name = 'seg_deeplabv3_r101'
