"""Images to bits: the binarizations of the LUT study, shared with the influence study's learners on bits.

* :func:`binarize` -- uint8 images to 0/1 bits (threshold, thermometer or most-significant-bit codes);
* :func:`coding_name` / :func:`parse_coding` -- a binarization as a file-name-safe name and back;
* :func:`binarize_cache` -- every training and test image of a cached dataset.
"""

from __future__ import annotations

import re

import numpy as np

from memgen.data import check_images

SCHEMES = ("threshold", "thermometer", "msb")


def binarize(images: np.ndarray, scheme: str = "threshold", bits: int = 1, threshold: int = 128,
             grey: bool = False) -> np.ndarray:
    """uint8 images ``[N, H, W(, C)]`` -> uint8 0/1 array ``[N, H*W*C*bits]`` (order: pixel, channel, bit).

    Schemes, applied to every channel value ``v``:

    * ``threshold``: 1 bit, ``v >= threshold`` (MNIST: the paper's 1-bit quantization with 128);
    * ``thermometer``: ``bits`` bits, ``v >= t_i`` for the evenly spaced levels ``t_i = 256 * i // (bits + 1)``,
      ``i = 1..bits`` (``bits=1`` is ``threshold`` at 128); more bits resolve finer intensity differences
      while staying monotone, so a LUT can read "brighter than" at several levels;
    * ``msb``: the ``bits`` most significant bits of ``v``, most significant first (plain quantization).

    ``grey=True`` first turns RGB into luminance ``(299 R + 587 G + 114 B) / 1000`` (integer, rounded).
    The project default for CIFAR-10 is colour, 1 bit per channel (``threshold`` at 128, 3072 bits): the
    direct analogue of 1-bit MNIST, and it keeps colour, which carries much of CIFAR's class signal.
    """
    x = check_images(images)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown binarization scheme '{scheme}'; use one of {SCHEMES}")
    if not 1 <= bits <= 8 or (scheme == "threshold" and bits != 1):
        raise ValueError(f"bits={bits} does not fit scheme '{scheme}': threshold gives exactly 1 bit per channel, "
                         "thermometer and msb 1 to 8; use scheme='thermometer' or 'msb' for more bits")
    if not 0 <= threshold <= 256:
        raise ValueError(f"threshold={threshold} is outside 0..256; pixel values are 0..255")
    if grey and x.shape[-1] == 3:
        x = ((x @ np.array([299, 587, 114], dtype=np.uint32) + 500) // 1000).astype(np.uint8)[..., None]
    if scheme == "threshold":
        out = x >= threshold
    elif scheme == "thermometer":
        out = x[..., None] >= (256 * np.arange(1, bits + 1) // (bits + 1)).astype(np.uint16)
    else:
        out = (x[..., None] >> np.arange(7, 7 - bits, -1, dtype=np.uint8)) & 1
    return out.reshape(len(x), -1).astype(np.uint8)


def coding_name(binarization: dict) -> str:
    """File-name-safe name of a binarization; codings that give identical bits get the same name
    (1-bit thermometer and 1-bit msb are the threshold at 128)."""
    scheme, bits = binarization.get("scheme", "threshold"), int(binarization.get("bits", 1))
    if scheme in ("thermometer", "msb") and bits == 1:
        scheme, threshold = "threshold", 128
    else:
        threshold = int(binarization.get("threshold", 128))
    name = f"threshold{threshold}" if scheme == "threshold" else f"{scheme}{bits}"
    return ("grey-" if binarization.get("grey") else "") + name


CODING_PATTERN = r"(grey-)?(threshold\d+|thermometer[1-8]|msb[1-8])"


def parse_coding(name: str) -> dict:
    """The binarize arguments of a :func:`coding_name`."""
    m = re.fullmatch(r"(grey-)?(threshold|thermometer|msb)(\d+)", name)
    if not m:
        raise ValueError(f"'{name}' is not a binarization name; use e.g. threshold128, thermometer2, msb3, "
                         "optionally prefixed with grey-")
    scheme, value = m.group(2), int(m.group(3))
    out = {"scheme": scheme, "grey": bool(m.group(1))}
    out.update({"bits": 1, "threshold": value} if scheme == "threshold" else {"bits": value})
    return out


def binarize_args(binarization: dict) -> dict:
    return {k: binarization[k] for k in ("scheme", "bits", "threshold", "grey") if k in binarization}


def bit_image_shape(image_shape, binarization: dict) -> tuple[int, int, int]:
    """(H, W, channels x bits) of the bit array binarize makes from images of ``image_shape`` (for the conv net)."""
    h, w, c = (tuple(image_shape) + (1,))[:3]
    if binarization.get("grey") and c == 3:
        c = 1
    return h, w, c * int(binarization.get("bits", 1))


def binarize_cache(dataset, binarization: dict) -> tuple[np.ndarray, np.ndarray]:
    """Bits of every training and test image of a :class:`memgen.data.Dataset`."""
    args = binarize_args(binarization)
    return binarize(dataset.x_train, **args), binarize(dataset.x_test, **args)
