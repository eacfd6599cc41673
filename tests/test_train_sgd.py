"""The lab's training loop with momentum, weight decay and a stepped learning rate, held by pytest (the chapter checks them
too): each test fails on a small change to the update, the schedule or the cache key."""
import pytest
import torch
from torch import nn

from hessian_nb.train import TrainConfig, batch_indices, make_data, make_model, train

BASE = dict(data={"name": "digits", "n_per_class": 10}, model={"arch": "mlp", "hidden": [8]}, lr=0.2, batch_size=16,
            max_steps=30, grad_tol=0, log_every=0)


def reference(cfg: TrainConfig) -> list:
    "The same run by torch.optim.SGD and MultiStepLR, step by step on the lab's batches."
    d = make_data(cfg)
    model = make_model(cfg, d)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.lr_milestones), gamma=cfg.lr_gamma)
    for s in range(cfg.max_steps):
        i = batch_indices(s, len(d.X), cfg.batch_size, cfg.seed)
        opt.zero_grad(); nn.functional.cross_entropy(model(d.X[i]), d.y[i]).backward(); opt.step(); sched.step()
    return list(model.parameters())


@pytest.mark.parametrize("extra", [dict(momentum=0.9), dict(weight_decay=5e-2), dict(lr_milestones=(10, 20), lr_gamma=0.5),
                                   dict(momentum=0.5, weight_decay=1e-2, lr_milestones=(1, 15), lr_gamma=0.3)])
def test_train_is_torch_sgd(extra):
    cfg = TrainConfig(**BASE, **extra)
    for p, q in zip(train(cfg).model.parameters(), reference(cfg)):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_the_learning_rate_steps_at_its_milestones():
    cfg = TrainConfig(lr=1.0, lr_milestones=(3, 5), lr_gamma=0.1)
    assert [cfg.lr_at(s) for s in range(7)] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01, 0.01])


def test_later_fields_enter_the_key_when_set_and_only_then():
    base = TrainConfig(**BASE)
    keys = {base.key()} | {TrainConfig(**BASE, **{k: v}).key() for k, v in
                           dict(momentum=0.9, weight_decay=1e-4, lr_milestones=(5,), lr_gamma=0.5).items()}
    assert len(keys) == 5  # each set field names another run
    assert "momentum" not in base.spec() and TrainConfig(**BASE, momentum=0.9).spec()["momentum"] == 0.9
    assert TrainConfig(**BASE, momentum=0.0).key() == base.key()  # the default, given explicitly: the same run
