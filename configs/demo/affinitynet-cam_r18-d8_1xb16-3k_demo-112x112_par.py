# The demo's stages 1-2 with the pixel-adaptive refiner (PAR, AFA CVPR 2022;
# mmaff.models.PAR at its reference settings) refining the confident
# regions instead of the dense CRF. Training is the demo's. The hook list
# is restated in full (mmengine replaces lists); it must stay the demo's
# but for the refiner (tests/test_configs/test_run_par_pipeline.py checks).
_base_ = ['./affinitynet-cam_r18-d8_1xb16-3k_demo-112x112.py']
custom_hooks = [
    dict(type='CAMExportHook', out_dir='{handovers.cams}'),
    dict(
        type='ConfidentRegionHook',
        out_dir='{handovers.conf}',
        alpha_low=0.7,
        alpha_high=2,
        refiner=dict(type='PAR'),
        num_workers=2)
]
