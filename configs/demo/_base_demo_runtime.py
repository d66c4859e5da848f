# The demo's runtime: mmaff's, seeded, with its hand-overs under
# work_dirs/demo (the demo pipeline passes its own work_dir).
_base_ = ['../_base_/default_runtime.py', '../_base_/handovers.py']
handover_root = 'work_dirs/demo'
# the demo CAMs' background threshold until the CAM sweep measures it
handovers = dict(cam_bg_threshold=0.45)
env_cfg = dict(cudnn_benchmark=False)
# So that two runs of `make demo` write the same summary.json: the seed
# fixes the weights' init, dropout, the samplers and the augmentations
# (mmengine seeds each data loader worker with seed + worker id). On CPU
# that makes every stage bitwise reproducible on the same machine and
# thread count (tests/test_configs/test_determinism.py); mmengine's
# `deterministic=True` changes nothing there, and on CUDA it would stop the
# demo (torch has no deterministic kernel for the backward of adaptive
# average pooling or of NLLLoss), so it is left off. A stage resumed after
# an interruption ends as an uninterrupted one: tools/train.py adds
# RandomStateHook (the dropout generator's state is not in mmengine's own
# checkpoint contents).
randomness = dict(seed=0)
