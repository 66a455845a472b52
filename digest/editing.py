"""The editor's changes to a draft issue, as pure functions: each takes an Issue, returns a new one.

Pinned items lead their section: every change keeps a section's pinned items before the rest,
in the order they were pinned or moved. A section left with no items disappears. Section
labels that are configured topics are what subscribers chose, so they cannot be renamed (the
readers of that topic would lose the section); automatic and "Other news" sections can.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from digest.errors import DigestError
from digest.models import Article, Issue, Section

# Column width of issue_items.section.
MAX_SECTION_LABEL = 200
# Inboxes show about 60 characters; the renderer cuts subjects at 150.
MAX_SUBJECT = 150
# An intro is a paragraph or three, not an article: keeps the email under Gmail's clip size.
MAX_INTRO = 5_000


class EditError(DigestError):
    """An edit that cannot be made (unknown item, bad label, too long); the issue is unchanged."""


def drop_item(issue: Issue, article_id: str) -> Issue:
    """The issue without this article."""
    _find(issue, article_id)
    sections = [
        Section(s.label, tuple(a for a in s.articles if a.id != article_id)) for s in issue.sections
    ]
    pinned = tuple(p for p in issue.pinned if p != article_id)
    return _tidy(replace(issue, pinned=pinned), sections)


def pin_item(issue: Issue, article_id: str, *, pinned: bool = True) -> Issue:
    """Pin an article first in its section (after those pinned before it), or unpin it (it
    stays where it stands: first of the unpinned)."""
    _find(issue, article_id)
    kept = tuple(p for p in issue.pinned if p != article_id)
    if pinned:
        # A newly pinned item goes last among the pinned: move it to the end of them.
        sections = [
            Section(s.label, _pinned_last(s.articles, article_id, set(kept)))
            for s in issue.sections
        ]
        return _tidy(replace(issue, pinned=(*kept, article_id)), sections)
    return _tidy(replace(issue, pinned=kept), list(issue.sections))


def move_item(issue: Issue, article_id: str, steps: int) -> Issue:
    """Move an article `steps` places within its section (negative: up), staying among its
    kind: a pinned item moves among the pinned, an unpinned one among the unpinned."""
    label, _article = _find(issue, article_id)
    pinned = set(issue.pinned)
    sections = []
    for section in issue.sections:
        if section.label != label:
            sections.append(section)
            continue
        group = [a for a in section.articles if (a.id in pinned) == (article_id in pinned)]
        index = next(i for i, a in enumerate(group) if a.id == article_id)
        moved = group.pop(index)
        group.insert(min(max(index + steps, 0), len(group)), moved)
        others = [a for a in section.articles if (a.id in pinned) != (article_id in pinned)]
        sections.append(Section(label, (*group, *others)))
    return _tidy(issue, sections)


def move_to_section(issue: Issue, article_id: str, label: str) -> Issue:
    """Move an article to the end of another section, a new one (last) if no section has
    that label."""
    target = clean_label(label)
    source, article = _find(issue, article_id)
    if target == source:
        return issue
    sections = [
        Section(s.label, tuple(a for a in s.articles if a.id != article_id)) for s in issue.sections
    ]
    if any(s.label == target for s in sections):
        sections = [
            Section(s.label, (*s.articles, article)) if s.label == target else s for s in sections
        ]
    else:
        sections.append(Section(target, (article,)))
    return _tidy(issue, sections)


def rename_section(issue: Issue, old: str, new: str, *, topics: Collection[str] = ()) -> Issue:
    """Give a section another label. `topics` are the digest's configured topic names."""
    label = clean_label(new)
    if not any(s.label == old for s in issue.sections):
        raise EditError(f"issue {issue.id}: no section {old!r}")
    if label == old:
        return issue
    if _folded(old) in {_folded(t) for t in topics}:
        raise EditError(
            f"section {old!r} is a topic readers chose; renamed, it would vanish from their issue"
        )
    if any(s.label == label for s in issue.sections):
        raise EditError(f"issue {issue.id} already has a section {label!r}; move items to it")
    sections = [Section(label, s.articles) if s.label == old else s for s in issue.sections]
    return replace(issue, sections=tuple(sections))


def set_intro(issue: Issue, markdown: str) -> Issue:
    """The editor's introduction, in Markdown (the template sanitises what it renders)."""
    text = markdown.replace("\r\n", "\n").strip()
    if len(text) > MAX_INTRO:
        raise EditError(f"intro is {len(text)} characters; at most {MAX_INTRO}")
    return replace(issue, intro=text)


def set_subject(issue: Issue, subject: str) -> Issue:
    """The subject line; empty restores the template's own (title and date)."""
    line = " ".join(subject.split())
    if len(line) > MAX_SUBJECT:
        raise EditError(f"subject is {len(line)} characters; at most {MAX_SUBJECT}")
    return replace(issue, subject=line)


def clean_label(label: str) -> str:
    """A section label as stored: one line, not empty, at most MAX_SECTION_LABEL characters."""
    line = " ".join(label.split())
    if not line:
        raise EditError("a section needs a name")
    if len(line) > MAX_SECTION_LABEL:
        raise EditError(f"section name is {len(line)} characters; at most {MAX_SECTION_LABEL}")
    return line


def _find(issue: Issue, article_id: str) -> tuple[str, Article]:
    for section in issue.sections:
        for article in section.articles:
            if article.id == article_id:
                return section.label, article
    raise EditError(f"issue {issue.id} has no item {article_id!r}")


def _pinned_last(
    articles: tuple[Article, ...], article_id: str, pinned: set[str]
) -> tuple[Article, ...]:
    if not any(a.id == article_id for a in articles):
        return articles
    chosen = next(a for a in articles if a.id == article_id)
    rest = [a for a in articles if a.id != article_id]
    return (*(a for a in rest if a.id in pinned), chosen, *(a for a in rest if a.id not in pinned))


def _tidy(issue: Issue, sections: list[Section]) -> Issue:
    """Pinned items first in each section (order kept otherwise); empty sections gone."""
    pinned = set(issue.pinned)
    ordered = tuple(
        Section(
            s.label,
            (
                *(a for a in s.articles if a.id in pinned),
                *(a for a in s.articles if a.id not in pinned),
            ),
        )
        for s in sections
        if s.articles
    )
    return replace(issue, sections=ordered)


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()
