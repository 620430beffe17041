"""Linear layers in oneDNN's own weight layout, for float32 models on a CPU.

On a CPU a decoding forward is mostly its linear layers' matrix products over few rows (one
position per drafting row, λ + 1 per judge). `torch.nn.functional.linear` calls a general matrix
product that reads the weight in PyTorch's layout every time; oneDNN can reorder a weight once into
the blocked layout its kernel reads (`torch.ops.mkldnn._reorder_linear_weight`, the prepacking
PyTorch's own compiler uses for CPU inference) and then multiply without that work
(`torch.ops.mkldnn._linear_pointwise`), faster at every number of rows the engine feeds
(docs/benchmarks.md, "Linear layers packed for oneDNN").

`pack_linear_layers(model)` replaces every plain float32 `nn.Linear` of the model's decoder by a
`PackedLinear` holding only the reordered weight (the dense one is dropped, so memory does not
double), after checking on the first layer that the packed product equals the dense one to float32
rounding; where the operations are missing, fail or disagree, the model is left as it is. The head
stays a plain `nn.Linear` (often tied to the input embeddings, and the runner projects only the
positions it wants): `packed_head` gives the runner a packed copy of it.

The packed product sums in another order than the dense one: logits differ by about 1e-5, so a
token may differ from an unpacked run's at a near-tie, as between any two matrix libraries. Rows
decoded together still decode the tokens of their lone runs (tests/engine/test_packing.py).
Quantised layers (bitsandbytes' subclasses of `nn.Linear`), other dtypes and other devices are not
packed.
"""

from __future__ import annotations

import torch

PACKED_HEAD = "pjudge_packed"  # the head's packed copy, a buffer of the head
BATCH_HINT = 32  # the rows oneDNN tunes the layout for (any hint from 16 up served 1 to 1,000 rows as well)


def packing_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def pack(weight: torch.Tensor) -> torch.Tensor:
    """The weight (out, in) reordered for oneDNN's matrix product (an opaque mkldnn tensor)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), BATCH_HINT)


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weightᵀ + bias, with the weight as `pack` made it; any leading dimensions."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


class PackedLinear(torch.nn.Module):
    """An `nn.Linear` whose weight lives only in oneDNN's layout (see the module docstring)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # A buffer, so that memory footprints count it; not persistent: it is no state to save.
        self.register_buffer("packed", pack(linear.weight), persistent=False)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return packed_linear(x, self.packed, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def packable(linear: torch.nn.Module) -> bool:
    return (type(linear) is torch.nn.Linear and linear.weight.dtype == torch.float32
            and linear.weight.device.type == "cpu")


def agrees(linear: torch.nn.Linear) -> bool:
    """Whether the packed product equals the dense one to float32 rounding, on random rows."""
    x = torch.randn(3, linear.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        dense = linear(x)
        packed = packed_linear(x, pack(linear.weight), linear.bias)
    return torch.allclose(packed, dense, rtol=1e-4, atol=1e-4 * float(dense.abs().max()) + 1e-6)


def pack_linear_layers(model) -> int:
    """Pack every plain float32 CPU `nn.Linear` of `model`'s decoder in place, and keep a packed copy
    of its head for `packed_head`; how many layers were packed (0 when oneDNN's operations are missing
    or disagree: the model is then as it was)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    found = [(parent, name, child) for parent in decoder.modules() for name, child in parent.named_children()
             if packable(child)]
    if not found or not packing_available():
        return 0
    try:
        if not agrees(found[0][2]):
            return 0
    except RuntimeError:  # an oneDNN build without these kernels (some ARM builds)
        return 0
    model.requires_grad_(False)  # the packed product has no gradient; nothing here trains
    for parent, name, child in found:
        setattr(parent, name, PackedLinear(child))
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and packable(head):  # a copy: the head's weight is often the embeddings' too
        head.register_buffer(PACKED_HEAD, pack(head.weight), persistent=False)
        head._pjudge_packed_from = head.weight
    return len(found)


def packed_head(model) -> torch.Tensor | None:
    """The packed copy of the model's head weight that `pack_linear_layers` made, while the head still
    has that weight; None for a model it did not pack."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    packed = getattr(head, PACKED_HEAD, None)
    return packed if packed is not None and head.weight is head._pjudge_packed_from else None
