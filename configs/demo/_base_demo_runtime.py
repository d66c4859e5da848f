# The demo's runtime: mmaff's, seeded, with its hand-overs under
# work_dirs/demo (the demo pipeline passes its own work_dir).
_base_ = ['../_base_/default_runtime.py', '../_base_/handovers.py']
handover_root = 'work_dirs/demo'
# the demo CAMs' background threshold until the CAM sweep measures it
handovers = dict(cam_bg_threshold=0.45)
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
