"""`digest.html`: one self-contained page of a digest, with an inline SVG chart per trending story.

Takes the `digest.json` document and returns the page; reads no database, writes no file. The
page loads nothing (inline CSS, inline SVG, no script) and its CSP says so. All digest text goes
through `tasks.escape.html_text`/`html_link`; links that cannot be made safe are listed at the end.
"""

from __future__ import annotations

from typing import Any

from . import digest_view as view
from .escape import Skipped, html_link, html_text

_CSS = """
:root{color-scheme:light dark;--fg:#1b1d21;--muted:#5d6470;--bg:#fff;--card:#f5f6f8;
--accent:#b4233c;--line:#dfe2e7}
@media (prefers-color-scheme:dark){:root{--fg:#e8eaee;--muted:#a2a9b4;--bg:#14161a;
--card:#1e2127;--accent:#ff7a8e;--line:#2d3139}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,Helvetica,Arial,sans-serif;-webkit-text-size-adjust:100%}
main{max-width:46rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;margin:.5rem 0 .25rem}h2{font-size:1.2rem;margin:2rem 0 .75rem;
border-bottom:1px solid var(--line);padding-bottom:.25rem}
h3{font-size:1.1rem;margin:0 0 .4rem;line-height:1.3}
.meta,.signals,.src,.also,time,footer,figcaption{color:var(--muted);font-size:.875rem}
.story{background:var(--card);border-radius:.6rem;padding:.9rem 1rem;margin:0 0 1rem;
border-left:4px solid var(--accent);overflow-wrap:anywhere}
.story p{margin:.3rem 0}
.kw{display:flex;flex-wrap:wrap;gap:.3rem;padding:0;margin:.4rem 0;list-style:none}
.kw li{border:1px solid var(--line);border-radius:1rem;padding:0 .55rem;font-size:.8rem}
.articles{margin:.5rem 0 0;padding-left:1.1rem}.articles li{margin:.4rem 0}
.articles p{margin:.1rem 0}
a{color:inherit;text-decoration-color:var(--accent);text-underline-offset:2px}
.others li,.failed li{margin:.35rem 0;overflow-wrap:anywhere}
figure.why{display:flex;align-items:flex-end;gap:.6rem;margin:.5rem 0}
.tl rect{fill:var(--muted);opacity:.45}.tl rect.now{fill:var(--accent);opacity:1}
.table{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:.85rem}
td,th{border-bottom:1px solid var(--line);padding:.3rem .4rem;text-align:left;
vertical-align:top;overflow-wrap:anywhere}
details summary{cursor:pointer;font-weight:600}
footer{margin:2rem 0 1rem}
"""
BAR, GAP, HEIGHT = 10, 3, 36


def timeline_svg(digest: dict[str, Any], story: dict[str, Any]) -> str:
    """An inline SVG bar chart of the story's independent texts per slice, the window's bar
    highlighted, labelled for screen readers; "" when the story has no timeline."""
    slices = view.timeline(story)
    label = view.timeline_text(digest, story)
    if not slices or not label:
        return ""
    top = max(t["texts"] for t in slices) or 1
    width = len(slices) * (BAR + GAP) - GAP
    bars = []
    for i, t in enumerate(slices):
        h = max(1, round(t["texts"] / top * (HEIGHT - 2)))
        cls = ' class="now"' if t.get("window") else ""
        bars.append(
            f'<rect{cls} x="{i * (BAR + GAP)}" y="{HEIGHT - h}" width="{BAR}" height="{h}"/>'
        )
    name = html_text(label)
    return (
        f'<figure class="why"><svg class="tl" role="img" aria-label="{name}" '
        f'width="{width}" height="{HEIGHT}" viewBox="0 0 {width} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{name}</title>{"".join(bars)}</svg>'
        f'<figcaption aria-hidden="true">{name[:1].upper() + name[1:]}</figcaption></figure>'
    )


def _article_html(a: dict[str, Any], story_text: str | None, skipped: Skipped) -> str:
    parts = [html_link(a["url"], a.get("title") or a["url"], skipped)]
    if a.get("source"):
        parts.append(f' <span class="src">{html_text(a["source"])}</span>')
    if a.get("published"):
        shown = str(a["published"])[:16].replace("T", " ")
        parts.append(f' <time datetime="{html_text(a["published"])}">{html_text(shown)}</time>')
    if a.get("summary") and a["summary"] != story_text:
        parts.append(f'<p class="sum">{html_text(a["summary"])}</p>')
    if a.get("also_in"):
        also = [
            html_link(c.get("url"), c.get("source") or c.get("url") or "?", skipped)
            for c in a["also_in"]
        ]
        parts.append(f'<p class="also">also in {", ".join(also)}</p>')
    return "<li>" + "".join(parts) + "</li>"


def _story_html(digest: dict[str, Any], s: dict[str, Any], skipped: Skipped) -> str:
    arts = view.story_articles(digest, s)
    text = view.story_summary(digest, s)
    parts = [
        f'<article class="story" id="{html_text(s["id"])}">',
        f'<h3 class="label">{html_text(s["label"])}</h3>',
    ]
    if text:
        parts.append(f'<p class="synthesis">{html_text(text)}</p>')
    if s.get("keywords"):
        kws = "".join(f"<li>{html_text(k)}</li>" for k in s["keywords"])
        parts.append(f'<ul class="kw">{kws}</ul>')
    parts.append(timeline_svg(digest, s))
    parts.append(f'<p class="signals">{html_text(" · ".join(view.facts(s, arts)))}</p>')
    items = "".join(_article_html(a, text, skipped) for a in arts)
    parts.append(f'<ul class="articles">{items}</ul></article>')
    return "\n".join(p for p in parts if p)


def _other_html(digest: dict[str, Any], s: dict[str, Any], skipped: Skipped) -> str:
    arts = view.story_articles(digest, s)
    lead = arts[0]["url"] if len(arts) == 1 else None
    line = html_link(lead, s["label"], skipped) if lead else html_text(s["label"])
    text = view.one_line_summary(digest, s)
    if text:
        line += f" — {html_text(text)}"
    n = view.independent_texts(s)
    if n > 1:
        line += f' <span class="src">· {n} sources</span>'
    also = [c for a in arts for c in a.get("also_in") or []]
    if also:
        carried = ", ".join(html_link(c.get("url"), c.get("source") or "?", skipped) for c in also)
        line += f' <span class="src">· also in {carried}</span>'
    return f"<li>{line}</li>"


def _feeds_html(digest: dict[str, Any]) -> list[str]:
    ok = sum(f["status"] in ("ok", "not_modified") for f in digest["feeds"])
    dropped = sum(len(f.get("dropped") or []) for f in digest["feeds"])
    note = f" · {dropped} entries dropped" if dropped else ""
    rows = [
        '<section id="feeds">',
        f"<details><summary>Feeds: {ok} of {len(digest['feeds'])} read{note}</summary>",
        '<div class="table"><table><thead><tr><th>feed</th><th>status</th><th>articles</th>'
        "<th>error</th><th>dropped</th></tr></thead><tbody>",
    ]
    for f in digest["feeds"]:
        rows.append(
            f"<tr><td>{html_text(f['url'])}</td><td>{html_text(f['status'])}</td>"
            f"<td>{html_text(f['articles'])}</td><td>{html_text(f.get('error') or '')}</td>"
            f"<td>{html_text(view.dropped_note(f))}</td></tr>"
        )
    return rows + ["</tbody></table></div></details>", "</section>"]


def render_html(digest: dict[str, Any]) -> str:
    """`digest.html`: one self-contained page (inline CSS and SVG, no script, no external asset)."""
    skipped: Skipped = []
    hot, rest = view.trending(digest), view.others(digest)
    c = digest["counts"]
    body = [
        "<header>",
        f"<h1>News digest — {html_text(view.day(digest))}</h1>",
        f'<p class="meta">{html_text(digest["window_hours"])} h ending '
        f"{html_text(digest['as_of'])} · {html_text(c['in_window'])} articles · "
        f"{html_text(c['stories'])} stories · {html_text(c['trending'])} trending</p>",
        "</header>",
        '<section id="trending">',
        "<h2>Trending</h2>",
    ]
    body += [_story_html(digest, s, skipped) for s in hot] or [
        "<p>Nothing is trending in this window.</p>"
    ]
    body.append("</section>")
    if rest:
        body += ['<section id="stories">', "<h2>Other stories</h2>", '<ul class="others">']
        body += [_other_html(digest, s, skipped) for s in rest]
        body += ["</ul>", "</section>"]
    body += _feeds_html(digest)
    failed = view.failed_articles(digest)
    if failed:
        body += ['<section id="failed">', "<h2>Failed articles</h2>", '<ul class="failed">']
        body += [
            f"<li>{html_link(a['url'], a['title'], skipped)} — {html_text(a['error'])}</li>"
            for a in failed
        ]
        body += ["</ul>", "</section>"]
    if skipped:
        body += ['<section id="unlinked">', "<h2>Links left out</h2>", "<ul>"]
        body += [f"<li>{html_text(t)}: {html_text(r)}</li>" for t, r in dict(skipped).items()]
        body += ["</ul>", "</section>"]
    body.append(
        f"<footer>Run {html_text(digest['run_id'])} · generated "
        f"{html_text(digest['generated_at'])}</footer>"
    )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">\n"
        f"<title>News digest — {html_text(view.day(digest))}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )
