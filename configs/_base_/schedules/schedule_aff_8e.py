# Stage 3 schedule (paper): batch 8, 8 epochs of train_aug = 10,582
# iterations; SGD lr 0.1 (head x10), wd 5e-4, poly 0.9 per iteration.
_base_ = ['./schedule_cam_15e.py']
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'aff_head': dict(lr_mult=10.0)}))
param_scheduler = [
    dict(
        type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=10582,
        by_epoch=False)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=10582, val_interval=100000)
