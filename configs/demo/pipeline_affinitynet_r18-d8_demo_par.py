# The demo pipeline with PAR (the pixel-adaptive refiner) in place of the
# dense CRF, for the confident regions (stage 2) and the pseudo labels
# (stage 4, and the walk's tuning on the held-out images, which scores
# RW + the config's refiner):
#   python tools/run_pipeline.py THIS_CONFIG
# Same data, training and settings as the demo's, in its own work dir; the
# summary keys are the demo's (rw_crf: RW + PAR here).
_base_ = ['./pipeline_affinitynet_r18-d8_demo.py']
work_dir = 'work_dirs/demo_par'
cam_config = 'configs/demo/affinitynet-cam_r18-d8_1xb16-3k_demo-112x112_par.py'  # noqa: E501
aff_config = 'configs/demo/affinitynet_r18-d8_1xb8-1k_demo-96x96_par.py'  # noqa: E501
