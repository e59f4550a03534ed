"""A photo as the machine's input: pixel codes ``[channels][height][width]``, 0..255.

M3ViT takes an RGB image of ``config.image_height x config.image_width`` (128 x 256 for
m3vit-tiny), channel-major, each value a pixel's 8-bit code ``k`` standing for ``k / 256``
(docs/numerics.md): no mean or standard deviation is subtracted. So a photo is decoded, turned to
RGB, scaled so that it covers the model's frame with its aspect ratio kept, cropped to the frame
around its centre (bilinear resampling), and its 8-bit codes are the input. ``.npy`` files of
pixel codes in that shape are taken as they are.
"""

import os

import numpy as np

__all__ = ["PictureError", "load_picture", "fit_picture"]


class PictureError(ValueError):
    """A file that cannot be the machine's input: unreadable, or of the wrong shape."""


def fit_picture(picture, config):
    """Pixel codes for ``config`` from a Pillow image: RGB, scaled to cover the frame, centre
    crop."""
    from PIL import Image
    if config.image_channels != 3:
        raise PictureError(f"{config.name} takes {config.image_channels} channels; a photo has "
                           f"3 (give a .npy of pixel codes instead)")
    width, height = config.image_width, config.image_height
    rgb = picture.convert("RGB")
    scale = max(width / rgb.width, height / rgb.height)
    size = (max(width, round(rgb.width * scale)), max(height, round(rgb.height * scale)))
    rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    rgb = rgb.crop((left, top, left + width, top + height))
    return np.asarray(rgb, dtype=np.int64).transpose(2, 0, 1)      # HWC -> CHW


def load_picture(path, config):
    """The pixel codes ``[C][H][W]`` (int64, 0..255) of a PNG/JPEG (any format Pillow reads)
    or of a ``.npy`` file of codes, for ``config``."""
    if not os.path.isfile(path):
        raise PictureError(f"{path}: no such file")
    shape = (config.image_channels, config.image_height, config.image_width)
    if path.endswith(".npy"):
        try:
            codes = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise PictureError(f"{path}: not a NumPy array file ({e})") from None
        if codes.shape != shape:
            raise PictureError(f"{path} holds an array of shape {codes.shape}; {config.name} "
                               f"takes pixel codes of shape {shape} (channels, height, width)")
        if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0 or codes.max() > 255:
            raise PictureError(f"{path}: pixel codes must be integers 0..255")
        return codes.astype(np.int64)
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise PictureError("reading photos needs Pillow: pip install pillow (or give a .npy "
                           "of pixel codes)") from None
    try:
        with Image.open(path) as picture:
            return fit_picture(picture, config)
    except UnidentifiedImageError:
        raise PictureError(f"{path}: not an image Pillow can read (PNG, JPEG, ...)") from None
