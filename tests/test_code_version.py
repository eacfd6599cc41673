"code_version sees every value a computation uses, to any depth, or refuses it (the fourteenth hostile round's cases)."
import collections
import functools
import types
import weakref

import numpy as np
import pytest
import torch

from hessian_nb.store import VersionError, code_version


def differs(make):
    "Two computations that differ only in a value made by `make(1)` and `make(2)` must have two versions."
    a, b = make(1), make(2)
    assert code_version(a) != code_version(b)
    assert code_version(make(1)) == code_version(a)  # and the same value gives the same version


def over(value):  # a computation that uses `value` through its closure
    return lambda: value


def big(k):  # a tensor whose repr is summarised: its middle element does not show
    t = torch.zeros(5000); t[2500] = k; return t


def test_values_nested_at_any_depth():
    differs(lambda k: over([[[[[[[[k]]]]]]]]))
    def deep_linear(k):
        lin = torch.nn.Linear(2, 2)
        with torch.no_grad(): lin.weight.fill_(k); lin.bias.fill_(0.0)
        return over({"a": {"b": {"c": {"d": lin}}}})
    differs(deep_linear)


def test_functools_descriptors_and_dispatch_are_followed():
    def with_cached_property(k):
        class A:
            @functools.cached_property
            def v(self): return k
        return A
    def with_partialmethod(k):
        class A:
            def f(self, a): return a
            g = functools.partialmethod(f, k)
        return A
    def with_dispatch(k):
        @functools.singledispatch
        def f(x): return 0
        @f.register(int)
        def _(x): return k
        return f
    def with_dispatch_method(k):
        class A:
            @functools.singledispatchmethod
            def f(self, x): return 0
            @f.register(int)
            def _(self, x): return k
        return A
    for make in (with_cached_property, with_partialmethod, with_dispatch, with_dispatch_method): differs(make)


def test_code_made_by_exec_is_user_code():
    def function(k):
        ns = {}; exec(f"def f(x):\n    return x * {k}\n", ns); return ns["f"]
    def cls(k):
        ns = {}; exec(f"class C:\n    def __call__(self, x):\n        return x * {k}\n", ns); return ns["C"]
    def named(k):
        ns = {"__name__": "nowhere"}; exec(f"def f(x):\n    return x * {k}\n", ns); return ns["f"]
    for make in (function, cls, named): differs(make)


def test_library_containers_and_objects_by_their_contents():
    def h1(x): return 1
    def h2(x): return 2
    for make in (lambda k: over(collections.deque([big(k)])), lambda k: over(types.SimpleNamespace(t=big(k))),
                 lambda k: over(torch.distributions.Normal(big(k), 1.0)),
                 lambda k: over(np.ma.masked_array(big(k).numpy(), mask=np.zeros(5000))),
                 lambda k: over(np.ma.masked_array(np.zeros(3), mask=[k == 1, False, k == 2])),
                 lambda k: over(types.SimpleNamespace(f=(h1, h2)[k - 1])), lambda k: over(collections.ChainMap({"f": (h1, h2)[k - 1]})),
                 lambda k: over(torch.utils.data.TensorDataset(torch.full((3,), float(k)))),
                 lambda k: over(np.array([{"k": k}], dtype=object)), lambda k: over("x" * 300 + str(k))):
        differs(make)


def test_a_library_module_by_its_attributes_and_hooks():
    def attribute(k):
        m = torch.nn.Tanh(); m.scale = k; return over(m)
    def hook(k):
        m = torch.nn.Tanh(); m.register_forward_hook(lambda mod, i, o: o * k); return over(m)
    def buffer(k):
        m = torch.nn.BatchNorm1d(3); m.running_mean.fill_(k); return over(m)
    for make in (attribute, hook, buffer): differs(make)


def test_what_cannot_be_described_is_refused():
    gen = (i for i in range(3))
    ref = weakref.ref(torch.nn.Tanh())
    for value, says in ((gen, "generator"), (ref, "weakref")):
        with pytest.raises(VersionError, match=f"{says}.*pass the value as an argument"): code_version(over(value))


def test_cycles_and_shared_values():
    loop = [1]; loop.append(loop)
    assert code_version(over(loop)) == code_version(over(loop))
    shared = [2.0]
    assert code_version(over([shared, shared])) == code_version(over([[2.0], [2.0]]))  # by value, not by identity
