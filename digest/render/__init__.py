"""Rendering: an issue variant becomes subject, preheader, HTML and text, then per-reader copies."""

from digest.render.environment import bundled_templates_dir, template_environment
from digest.render.issue import (
    GMAIL_CLIP_BYTES,
    RenderContext,
    RenderedIssue,
    personalise,
    render_issue,
)
from digest.render.markers import PERSONAL_FIELDS

__all__ = [
    "GMAIL_CLIP_BYTES",
    "PERSONAL_FIELDS",
    "RenderContext",
    "RenderedIssue",
    "bundled_templates_dir",
    "personalise",
    "render_issue",
    "template_environment",
]
