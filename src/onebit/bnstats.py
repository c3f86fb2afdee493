"""Batch-norm statistics for testing, re-estimated after training as the official
code does ([P] 3.2.1; ``WideResNet_Test.m``).

The official code normalises with batch statistics while training and, at the end of
each warm-restart cycle, sets every BN layer's test-time statistics from one pass over
the training set with the training augmentation: the plain average over the batches of
each batch's mean and of each batch's ``sigma = sqrt(var + eps)`` (biased variance).
Here ``running_mean`` becomes the average mean and ``running_var`` the average sigma
squared minus ``eps``, so that ``sqrt(running_var + eps)`` is exactly the official
average sigma.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def reestimate(model: nn.Module, batches, amp: bool = False, reduce=None) -> int:
    """Set the running statistics of every BN layer of ``model`` from ``batches`` (an
    iterable of ``(images, labels)``); ``reduce`` sums a tensor over processes under
    data parallelism. Returns the number of batches. The model is left in train mode
    and its ``num_batches_tracked`` counters are not changed."""
    bns = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.running_mean is not None
    ]
    sums = {bn: torch.zeros(2, bn.num_features, dtype=torch.float64, device=bn.running_mean.device) for bn in bns}

    def record(bn, args):
        x = args[0].float()
        var, mean = torch.var_mean(x, dim=[d for d in range(x.dim()) if d != 1], correction=0)
        sums[bn][0] += mean.double()
        sums[bn][1] += (var + bn.eps).sqrt().double()

    counts = [bn.num_batches_tracked.clone() for bn in bns]
    hooks = [bn.register_forward_pre_hook(record) for bn in bns]
    model.train()
    n = 0
    try:
        for xb, _ in batches:
            with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=amp):
                model(xb)
            n += 1
    finally:
        for h in hooks:
            h.remove()
    total = torch.tensor(float(n), dtype=torch.float64, device=bns[0].running_mean.device) if bns else None
    for bn, count in zip(bns, counts):
        s, t = sums[bn], total
        if reduce is not None:
            s, t = reduce(s), reduce(total.clone())
        mean, sigma = s[0] / t, s[1] / t
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(sigma * sigma - bn.eps)
        bn.num_batches_tracked.copy_(count)
    return n
