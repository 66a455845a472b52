"""Debian's Chromium for the browser tests: how it is launched, where screenshots go, and the
layout measurements (sideways scroll, images, text sizes, tap targets) every email must pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# `pytestmark = BROWSER_TEST` in each browser test module: marked, and skipped without Chromium.
BROWSER_TEST = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason=f"{CHROMIUM} is absent (apt-get install chromium)"
    ),
]
# Headless, offline and quiet: no sandbox (we run as root), no GPU, no calls home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
# WCAG 2.5.8: a pointer target at least 24 by 24 CSS px (links inside a sentence are exempt).
MIN_TAP_PX = 24
# An image drawn with a width/height ratio this far off its file's ratio looks squashed.
MAX_SHAPE_ERROR = 0.02


def screenshots_dir() -> Path:
    """Full-page PNGs go here: $DIGEST_SCREENSHOTS, else <repo>/test-artefacts/screenshots."""
    folder = Path(os.environ.get("DIGEST_SCREENSHOTS") or REPO / "test-artefacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# What a reader's layout depends on, measured in the page as drawn.
LAYOUT_JS = r"""
() => {
  const isShown = (element) =>
    element.checkVisibility({ opacityProperty: true, visibilityProperty: true });
  // The block an inline element flows in (its line boxes belong to that block).
  const blockOf = (element) => {
    let node = element.parentElement;
    while (node && node !== document.body && getComputedStyle(node).display.startsWith("inline")) {
      node = node.parentElement;
    }
    return node || document.body;
  };
  const boxOf = (element) => {
    const r = element.getBoundingClientRect();
    return { left: r.left, right: r.right, top: r.top + window.scrollY, width: r.width,
             height: r.height };
  };
  const images = [...document.images].filter(isShown).map((img) => ({
    src: img.currentSrc || img.getAttribute("src") || "",
    loaded: img.complete && img.naturalWidth > 0,
    natural_width: img.naturalWidth,
    natural_height: img.naturalHeight,
    box: boxOf(img),
    container: boxOf(blockOf(img)),
  }));
  const letter = /\p{L}/u;
  const links = [...document.querySelectorAll("a[href]")].filter(isShown).map((a) => {
    // A link stands alone when its block holds no other words (separators and counts only).
    const block = blockOf(a);
    let rest = block.textContent;
    for (const other of block.querySelectorAll("a")) rest = rest.replace(other.textContent, "");
    const lineHeight = parseFloat(getComputedStyle(a).lineHeight);  // NaN for "normal"
    const box = a.getBoundingClientRect();
    return {
      href: a.getAttribute("href") || "",
      text: a.textContent.replace(/\s+/g, " ").trim(),
      standalone: !letter.test(rest),
      tap_height: Math.max(box.height, Number.isNaN(lineHeight) ? 0 : lineHeight),
      tap_width: box.width,
    };
  });
  const headings = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")]
    .filter(isShown)
    .map((h) => ({ tag: h.tagName.toLowerCase(), text: h.textContent.trim(),
                   font_size: parseFloat(getComputedStyle(h).fontSize) }));
  const characters = new Map();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.replace(/[\s\u034f\u200c]+/g, "");
    if (!text || !isShown(node.parentElement)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    if (![...range.getClientRects()].some((r) => r.width > 0 && r.height > 0)) continue;
    const size = parseFloat(getComputedStyle(node.parentElement).fontSize);
    characters.set(size, (characters.get(size) || 0) + text.length);
  }
  return {
    viewport_width: window.innerWidth,
    scroll_width: document.scrollingElement.scrollWidth,
    images,
    links,
    headings,
    characters_by_size: [...characters.entries()],
  };
}
"""


@dataclass(frozen=True, slots=True)
class Box:
    left: float
    right: float
    top: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Picture:
    """An <img> as drawn, its file's own size (0 when it did not load), and its block."""

    src: str
    loaded: bool
    natural_width: int
    natural_height: int
    box: Box
    container: Box

    def shape_error(self) -> float:
        """How far the drawn width/height ratio is from the file's, as a fraction."""
        if not self.loaded or self.box.height == 0:
            return 0.0
        drawn = self.box.width / self.box.height
        return abs(drawn / (self.natural_width / self.natural_height) - 1)


@dataclass(frozen=True, slots=True)
class LinkTarget:
    href: str
    text: str
    standalone: bool
    tap_height: float
    tap_width: float


@dataclass(frozen=True, slots=True)
class Heading:
    tag: str
    text: str
    font_size: float


@dataclass(frozen=True, slots=True)
class Layout:
    """One page at one width, as far as fitting, images, type sizes and tapping go."""

    viewport_width: int
    scroll_width: int
    pictures: tuple[Picture, ...]
    links: tuple[LinkTarget, ...]
    headings: tuple[Heading, ...]
    characters_by_size: tuple[tuple[float, int], ...]

    @property
    def body_font_size(self) -> float:
        """The size most visible characters are set in."""
        return max(self.characters_by_size, key=lambda pair: pair[1])[0]


def measure_layout(page: Any) -> Layout:
    """Run LAYOUT_JS in a loaded Playwright page."""
    seen = page.evaluate(LAYOUT_JS)
    return Layout(
        viewport_width=seen["viewport_width"],
        scroll_width=seen["scroll_width"],
        pictures=tuple(
            Picture(**{**p, "box": Box(**p["box"]), "container": Box(**p["container"])})
            for p in seen["images"]
        ),
        links=tuple(LinkTarget(**link) for link in seen["links"]),
        headings=tuple(Heading(**heading) for heading in seen["headings"]),
        characters_by_size=tuple((size, count) for size, count in seen["characters_by_size"]),
    )


def pictures_that_overflow(layout: Layout) -> list[str]:
    """Images wider than their block or poking out of the viewport (1 px rounding allowed)."""
    return [
        f"{p.src}: drawn at x {p.box.left:.0f}–{p.box.right:.0f}, its block spans "
        f"{p.container.left:.0f}–{p.container.right:.0f}, the viewport 0–{layout.viewport_width}"
        for p in layout.pictures
        if p.box.left < max(p.container.left, 0) - 1
        or p.box.right > min(p.container.right, layout.viewport_width) + 1
    ]


def distorted_pictures(layout: Layout) -> list[str]:
    return [
        f"{p.src}: {p.natural_width}×{p.natural_height} drawn as "
        f"{p.box.width:.0f}×{p.box.height:.0f}"
        for p in layout.pictures
        if p.shape_error() > MAX_SHAPE_ERROR
    ]


def small_tap_targets(layout: Layout) -> list[str]:
    """Links standing on their own whose line box is under 24 px tall (or which are narrower)."""
    return [
        f"{link.text[:40]!r} ({link.href[:60]}): {link.tap_width:.0f}×{link.tap_height:.0f} px"
        for link in layout.links
        if link.standalone and (link.tap_height < MIN_TAP_PX or link.tap_width < MIN_TAP_PX)
    ]
