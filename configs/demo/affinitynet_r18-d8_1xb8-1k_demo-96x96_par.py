# The demo's stages 3-4 with the pixel-adaptive refiner (PAR, AFA CVPR 2022;
# mmaff.models.PAR at its reference settings) refining the walk's labels
# instead of the dense CRF (the pseudo labels keep their hand-over name,
# pseudo_rw_crf, and the metric its column name, RW+dCRF). The hook list is
# restated in full (mmengine replaces lists); it must stay the demo's but
# for the refiner (tests/test_configs/test_run_par_pipeline.py checks).
_base_ = ['./affinitynet_r18-d8_1xb8-1k_demo-96x96.py']
custom_hooks = [
    dict(
        type='RandomWalkHook',
        out_dir='{handovers.pseudo_rw}',
        crf_out_dir='{handovers.pseudo_rw_crf}',
        refiner=dict(type='PAR'),
        num_workers=0)
]
