# The paper's recipe with mmseg's DeepLabV3+ (ResNet-101) as the
# segmentation network; shares stages 1-4 with the ResNet-38 pipeline.
#   python tools/run_pipeline.py THIS_CONFIG [--launcher pytorch --gpus 4]
_base_ = './pipeline_affinitynet_resnet38d_voc12aug.py'
seg_config = 'configs/affinitynet/deeplabv3plus_r101-d8_4xb4-40k_voc12aug-512x512_affinitynet-pseudo.py'  # noqa: E501
seg_name = 'seg_deeplabv3plus_r101'
