"""Link previews: the title, description and thumbnail of the first link in a text, as WhatsApp
shows them under it. The page and its image are fetched through the same SSRF guard as media
URLs (`fetch`); a preview that cannot be made leaves the message without one, never unsent."""

from __future__ import annotations

import base64
import io
import logging
import re
from html.parser import HTMLParser
from urllib.parse import urljoin

from gateway.core.urlguard import UrlRefused
from messaging.services.fetch import fetch

logger = logging.getLogger(__name__)
URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
PAGE_MAX_BYTES = 512 * 1024
IMAGE_MAX_BYTES = 2 * 1024 * 1024
THUMBNAIL_SIDE = 300  # WhatsApp's link thumbnails are small JPEGs


class _Meta(HTMLParser):
    """The page's <title> and its Open Graph / description <meta> tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "meta":
            key = (values.get("property") or values.get("name") or "").lower()
            if key and key not in self.meta:
                self.meta[key] = values.get("content", "").strip()
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _thumbnail(data: bytes) -> str:
    """A small JPEG of the image (base64), or "" when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG", quality=80)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return ""
    return base64.b64encode(out.getvalue()).decode()


def link_preview(text: str) -> dict[str, str] | None:
    """The preview of the first link in `text`: {url, title, description, thumbnail (a JPEG in
    base64, or "")}; None when there is no link or its page gives nothing to show."""
    match = URL.search(text)
    if match is None:
        return None
    url = match.group(0).rstrip(".,;:!?)")
    try:
        page = fetch(url, max_bytes=PAGE_MAX_BYTES)
    except UrlRefused as exc:
        logger.info("no link preview for %s: %s", url, exc)
        return None
    parser = _Meta()
    parser.feed(page.data[:PAGE_MAX_BYTES].decode("utf-8", errors="replace"))
    meta = parser.meta
    title = (meta.get("og:title") or parser.title).strip()[:300]
    description = (meta.get("og:description") or meta.get("description", "")).strip()[:500]
    if not title:
        return None
    thumbnail = ""
    if image := meta.get("og:image"):
        try:
            thumbnail = _thumbnail(fetch(urljoin(url, image), max_bytes=IMAGE_MAX_BYTES).data)
        except UrlRefused as exc:
            logger.info("no thumbnail for %s: %s", url, exc)
    return {"url": url, "title": title, "description": description, "thumbnail": thumbnail}
