"""A guard that catches, on the CPU, the operations a GPU refuses: mixing a tensor that lives on the
model's device with one that was made on the host.

On a GPU every tensor an operation mixes with the model's output must be on the model's device
(CUDA allows 0-dim CPU tensors only). On the CPU everything is on the same device, so such code runs
here and fails on a GPU. `DeviceGuard(lm)` tracks, while it is active:
  * *model tensors*: what the model, its decoder stack or its output head return, and every tensor an
    operation computes from one;
  * *host tensors*: a tensor a factory (``torch.tensor``, ``zeros``, ``arange``, ...) made without
    naming a device, and every tensor computed from host tensors alone; naming a device
    (``.to(device)``, ``.to(other_tensor)``, ``.cuda()``, ``device=`` in a factory) makes it a tensor
    of that device, no longer a host tensor;
and raises `DeviceMixError` when one operation takes a model tensor and a host tensor of more than one
element. Indexing is exempt (CUDA accepts host index tensors) and so are 0-dim and one-element tensors.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

FACTORIES = {torch.tensor, torch.as_tensor, torch.zeros, torch.ones, torch.full, torch.empty, torch.arange,
             torch.linspace, torch.rand, torch.randn, torch.randint, torch.eye}
INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}
MOVES = {torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu}
HOST, MODEL = "_pj_host", "_pj_model"


class DeviceMixError(AssertionError):
    """An operation mixed the model's output with a tensor made on the host (see the module docstring)."""


def _mark(value, name: str) -> None:
    for leaf in tree_flatten(value)[0]:
        if isinstance(leaf, torch.Tensor):
            setattr(leaf, name, True)


def _names_a_device(func, args, kwargs) -> bool:
    if func in (torch.Tensor.cuda, torch.Tensor.cpu) or "device" in kwargs:
        return True
    return func is torch.Tensor.to and any(isinstance(a, (torch.device, str, torch.Tensor)) for a in args[1:])


def _outputs(value):
    """A model's output: its tensors (logits, hidden states), not the cache it carries."""
    if hasattr(value, "logits") or hasattr(value, "last_hidden_state"):
        return [getattr(value, k) for k in ("logits", "last_hidden_state") if getattr(value, k, None) is not None]
    return value


class DeviceGuard(TorchFunctionMode):
    """Active inside a `with`; see the module docstring."""

    def __init__(self, lm):
        super().__init__()
        model = lm.model
        modules = {model, model.get_output_embeddings()}
        if hasattr(model, "get_decoder"):
            modules.add(model.get_decoder())
        self.hooks = [m.register_forward_hook(lambda module, args, out: _mark(_outputs(out), MODEL))
                      for m in modules if m is not None]
        self.checked = 0

    def __exit__(self, *exc):
        for hook in self.hooks:
            hook.remove()
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        from_model = any(getattr(t, MODEL, False) for t in tensors)
        hosted = [t for t in tensors if getattr(t, HOST, False) and t.numel() > 1]
        moved = func in MOVES and _names_a_device(func, args, kwargs)
        if from_model and hosted and func not in INDEXING and not moved:
            raise DeviceMixError(f"{getattr(func, '__name__', func)} mixes the model's output with a tensor of shape "
                                 f"{tuple(hosted[0].shape)} made on the host: create it with device= (or .to(logits))")
        self.checked += 1
        out = func(*args, **kwargs)
        if func in FACTORIES:
            if "device" not in kwargs:
                _mark(out, HOST)
        elif moved:  # now a tensor of the device it names (on the CPU `.to` may return the tensor itself: it is
            setattr(out, HOST, False)  # moved too; on a GPU the host original would stay a host tensor)
        elif tensors and all(getattr(t, HOST, False) or t.numel() <= 1 for t in tensors) \
                and any(getattr(t, HOST, False) for t in tensors):
            _mark(out, HOST)
        if from_model:
            _mark(out, MODEL)
        return out
