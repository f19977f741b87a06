"""Whole-batch CIFAR augmentation on the device (airbench style): flips, reflect-pad crops.

No Python loop runs over samples: a flip is one ``torch.where`` over a per-image
mask, a crop is two ``gather`` calls over a reflect-padded batch. All randomness
comes from an explicit :class:`torch.Generator`; random numbers are drawn on the
generator's device and then moved to the data's, so a CPU generator gives the same
augmentation whether the images live on the CPU or a GPU.

See ``KellerJordan/cifar10-airbench`` (``batch_flip_lr``, ``batch_crop``) for the idea.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kernels.checks import Interval, check_param

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "to_device",
    "flip_with_mask",
    "batch_flip",
    "crop_with_shifts",
    "batch_crop",
    "augment",
    "batches",
]

# Per-channel mean and std of the CIFAR-10 training images, on the [0, 1] scale.
CIFAR_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)


def to_device(
    images: Any,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    mean: tuple[float, ...] = CIFAR_MEAN,
    std: tuple[float, ...] = CIFAR_STD,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 NHWC images -> normalised float NCHW tensor on ``device``.

    ``x = (images / 255 - mean) / std`` per channel. The uint8 array is moved to the
    device first (4x less traffic than float32), then converted there.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor of uint8, shape (N, H, W, 3)
    device : str or torch.device, default="cpu"
    dtype : torch floating dtype, default=torch.float32
    mean, std : tuple of 3 floats
        Channel statistics on the [0, 1] scale (default: CIFAR-10's).
    channels_last : bool, default=False
        Return ``torch.channels_last`` memory format (faster convolutions on GPUs).

    Returns
    -------
    torch.Tensor, shape (N, 3, H, W)
    """
    fn = "to_device"
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"{fn}: images must be uint8 (N, H, W, 3); got dtype {images.dtype}")
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{fn}: images must be a numpy array or torch tensor of uint8; got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(f"{fn}: images must be uint8 (N, H, W, 3); got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3 or min(images.shape[:3]) < 1:
        raise ValueError(f"{fn}: images must have shape (N, H, W, 3) with N, H, W >= 1; got {tuple(images.shape)}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"{fn}: dtype must be a torch floating dtype; got {dtype!r}")
    for name, stat, low in (("mean", mean, None), ("std", std, 0.0)):
        if len(tuple(stat)) != 3:
            raise ValueError(f"{fn}: {name} must hold 3 per-channel values; got {stat!r}")
        for v in stat:
            check_param(fn, name, v, Interval(float, low, None, "neither" if low is not None else "both"))
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = images.to(device).permute(0, 3, 1, 2).to(dtype, memory_format=layout)  # one float copy
    m = torch.tensor(mean, dtype=dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=dtype, device=x.device).view(1, 3, 1, 1)
    return x.div_(255).sub_(m).div_(s)


def _check_batch(fn: str, x: Any) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: x must be a torch.Tensor of shape (N, C, H, W); got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{fn}: x must have shape (N, C, H, W); got {tuple(x.shape)}")


def _check_generator(fn: str, generator: Any) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{fn}: generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)); got {type(generator).__name__}"
        )


def flip_with_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images where ``mask`` (shape (N,), bool) is True.

    ``torch.where(mask, x.flip(-1), x)``; applying it twice with the same mask gives ``x``.
    """
    fn = "flip_with_mask"
    _check_batch(fn, x)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (x.shape[0],):
        raise ValueError(
            f"{fn}: mask must be a bool tensor of shape ({x.shape[0]},); got {getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}"
        )
    return torch.where(mask.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def batch_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 1/2 (one mask draw per batch)."""
    fn = "batch_flip"
    _check_batch(fn, x)
    _check_generator(fn, generator)
    mask = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
    return flip_with_mask(x, mask)


def crop_with_shifts(x: torch.Tensor, shift_y: torch.Tensor, shift_x: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop ``x[n]`` out of its reflect-padded copy at offset ``(shift_y[n], shift_x[n])``.

    ``out[n] = reflect_pad(x, pad)[n, :, shift_y[n] : shift_y[n] + H, shift_x[n] : shift_x[n] + W]``,
    computed with two ``gather`` calls over the padded batch, shifts in ``[0, 2 pad]``
    (``pad`` means no translation).
    """
    fn = "crop_with_shifts"
    _check_batch(fn, x)
    n, c, h, w = x.shape
    check_param(fn, "pad", pad, Interval(int, 0, min(h, w) - 1))
    for name, s in (("shift_y", shift_y), ("shift_x", shift_x)):
        if not isinstance(s, torch.Tensor) or s.dtype not in (torch.int64, torch.int32) or tuple(s.shape) != (n,):
            raise ValueError(
                f"{fn}: {name} must be an integer tensor of shape ({n},); got {getattr(s, 'dtype', type(s).__name__)} {tuple(getattr(s, 'shape', ()))}"
            )
        if s.numel() and (int(s.min()) < 0 or int(s.max()) > 2 * pad):
            raise ValueError(
                f"{fn}: {name} must lie in [0, {2 * pad}] for pad={pad}; got values in [{int(s.min())}, {int(s.max())}]"
            )
    if pad == 0:
        return x.clone()
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = shift_y.to(x.device, torch.int64).view(n, 1) + torch.arange(h, device=x.device)
    cols = shift_x.to(x.device, torch.int64).view(n, 1) + torch.arange(w, device=x.device)
    out = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * pad))
    return out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def batch_crop(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels: uniform crops of the reflect-padded batch."""
    fn = "batch_crop"
    _check_batch(fn, x)
    _check_generator(fn, generator)
    check_param(fn, "pad", pad, Interval(int, 0, min(x.shape[-2:]) - 1))
    shifts = torch.randint(0, 2 * pad + 1, (2, x.shape[0]), generator=generator, device=generator.device)
    return crop_with_shifts(x, shifts[0], shifts[1], pad)


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop (reflect padding ``pad``) then random left-right flip; shapes and dtype kept."""
    fn = "augment"
    _check_batch(fn, x)
    _check_generator(fn, generator)
    check_param(fn, "pad", pad, Interval(int, 0, min(x.shape[-2:]) - 1))
    if not isinstance(flip, bool):
        raise TypeError(f"{fn}: flip must be a bool; got {flip!r}")
    out = batch_crop(x, generator, pad) if pad > 0 else x
    return batch_flip(out, generator) if flip else out


def batches(
    n: int,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
    device: str | torch.device | None = None,
) -> Iterator[torch.Tensor]:
    """Index tensors (int64) covering ``range(n)`` in batches of ``batch_size``.

    A random permutation (drawn from ``generator``, required when ``shuffle``) or the
    identity order. The last, short batch is dropped when ``drop_last``. Arguments are
    checked at the call, before the first batch is drawn.
    """
    fn = "batches"
    check_param(fn, "n", n, Interval(int, 1, None))
    check_param(fn, "batch_size", batch_size, Interval(int, 1, None))
    for name, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
        if not isinstance(flag, bool):
            raise TypeError(f"{fn}: {name} must be a bool; got {flag!r}")
    if shuffle:
        _check_generator(fn, generator)
        assert generator is not None  # _check_generator raised unless it is a torch.Generator
        order = torch.randperm(int(n), generator=generator, device=generator.device)
    else:
        order = torch.arange(int(n))
    if device is not None:
        order = order.to(device)
    stop = (n // batch_size) * batch_size if drop_last else n
    return (order[i : i + batch_size] for i in range(0, stop, batch_size))
