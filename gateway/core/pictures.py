"""Profile and group pictures as WhatsApp keeps them: square JPEGs of at most 640 px.

An upload (JPEG or PNG) is decoded and drawn anew, so nothing of the original file but its
pixels reaches WhatsApp: no metadata, no script, no polyglot."""

from __future__ import annotations

import base64
import io
from typing import Any

from django.conf import settings

from gateway.core.errors import PayloadTooLarge, Unprocessable

SIDE = 640


def picture_jpeg(upload: Any) -> str:
    """The upload as a square JPEG (centre-cropped, at most 640 px a side), in base64."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if upload is None:
        raise Unprocessable(
            "Upload the picture as the multipart field `file`.", code="file_required"
        )
    if upload.size > settings.PICTURE_MAX_BYTES:
        raise PayloadTooLarge(f"A picture may have up to {settings.PICTURE_MAX_BYTES} bytes.")
    try:
        with Image.open(upload) as image:
            if image.format not in ("JPEG", "PNG"):
                raise Unprocessable("A picture must be a JPEG or a PNG.", code="invalid_image")
            image.load()
            side = min(SIDE, image.width, image.height)
            square = ImageOps.fit(ImageOps.exif_transpose(image).convert("RGB"), (side, side))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise Unprocessable("The picture cannot be read.", code="invalid_image") from exc
    out = io.BytesIO()
    square.save(out, "JPEG", quality=85)
    return base64.b64encode(out.getvalue()).decode()
