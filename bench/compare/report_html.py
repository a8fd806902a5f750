#!/usr/bin/python3
"""Writes OUT/report.html from OUT/report.md: one self-contained file (the
figures inlined as data: URIs, no script or style from elsewhere), to open in
a browser or mail to someone.

Markdown to HTML is Debian's python3-markdown (its tables and fenced_code
extensions). A small inline script counts the figures that decoded and puts
the count in <body data-figures-loaded="N" data-figures="M"> and the title,
which tests/compare/report_html.sh checks in headless Chromium.

  report_html.py OUT_DIR
"""
import base64
import html
import os
import re
import sys

import markdown

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
pre, code { background: #f7f7f7; font-size: 0.85em; }
pre { padding: 0.5em; overflow-x: auto; }
strong { color: #a00; }
"""

COUNT_FIGURES = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
  document.body.dataset.figuresLoaded = ok;
  document.body.dataset.figures = imgs.length;
  document.title = document.title + ' [' + ok + '/' + imgs.length + ' figures]';
});
"""


def inline_images(body, out):
    """<img src="X.png"> -> a data: URI of OUT/X.png; a missing file stays a (broken) reference."""
    def repl(m):
        src = html.unescape(m.group(2))
        path = os.path.join(out, src)
        if "/" in src or not os.path.isfile(path):
            print(f"report_html: figure {src} is missing", file=sys.stderr)
            return m.group(0)
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode()
        return f'{m.group(1)}data:image/png;base64,{data}{m.group(3)}'
    return re.sub(r'(<img[^>]*?src=")([^"]+\.png)(")', repl, body)


def build(out):
    with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
        text = f.read()
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), "quiclab comparison")
    body = markdown.markdown(text, extensions=["tables", "fenced_code"], output_format="html")
    body = inline_images(body, out)
    page = (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n"
            f"<script>{COUNT_FIGURES}</script>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
    path = os.path.join(out, "report.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def main():
    if len(sys.argv) != 2:
        print("usage: report_html.py OUT_DIR", file=sys.stderr)
        return 2
    print("report: " + build(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
