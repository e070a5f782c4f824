"""mkdocs hooks: the repository files that the manual links to become part of the site.

The pages in `docs/` link to files outside it by their place in the repository (`../benchmarks/results/x.md`,
`../examples/node/README.md`, `../CONTRIBUTING.md`), so the links work on a forge and in a clone. mkdocs knows
only `docs/`: `on_files` adds each such file that exists (and, in turn, what those files link to outside
`docs/`) to the site at its repository path, Markdown as a page and anything else as it is. A link to a file
that does not exist is left to mkdocs, which warns, so `mkdocs build --strict` still fails on it.
`on_page_markdown` points the links of those outside pages back into `docs/` at the pages' URLs.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.utils import get_relative_url

# The target of a Markdown inline link or image: `](target)` or `](target "title")`.
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)")
OUTSIDE = "../"  # how a target outside docs/ begins, as a path relative to docs/


def _targets(page_uri: str, text: str):
    """(link as written, its target as a normalised path relative to docs/) of every relative link in `text`."""
    for link in LINK.findall(text):
        parts = urlsplit(link)
        if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
            continue
        yield link, posixpath.normpath(posixpath.join(posixpath.dirname(page_uri), unquote(parts.path)))


def _outside_file(uri: str, config) -> File:
    """The repository file `uri` (relative to docs/, starting with ../) as a site file at its repository path."""
    inside = File(
        uri[len(OUTSIDE) :],
        src_dir=config.docs_dir,
        dest_dir=config.site_dir,
        use_directory_urls=config.use_directory_urls,
    )
    return File(
        uri,
        src_dir=config.docs_dir,
        dest_dir=config.site_dir,
        use_directory_urls=config.use_directory_urls,
        dest_uri=inside.dest_uri,
        inclusion=InclusionLevel.NOT_IN_NAV,
    )


def on_files(files: Files, config) -> Files:
    docs = Path(config.docs_dir).resolve()
    repo = docs.parent
    pending = [f for f in files if f.src_uri.endswith(".md")]
    while pending:
        page = pending.pop()
        for _, uri in _targets(page.src_uri, Path(page.abs_src_path).read_text(encoding="utf-8")):
            if not uri.startswith(OUTSIDE) or uri.startswith(OUTSIDE * 2) or files.get_file_from_path(uri):
                continue
            path = (docs / uri).resolve()
            if not path.is_file() or not path.is_relative_to(repo) or path.is_relative_to(docs):
                continue  # missing: mkdocs warns; a way back into docs/: on_page_markdown
            added = _outside_file(uri, config)
            files.append(added)
            if uri.endswith(".md"):
                pending.append(added)
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    if not page.file.src_uri.startswith(OUTSIDE):
        return markdown
    docs = Path(config.docs_dir).resolve()
    for link, uri in _targets(page.file.src_uri, markdown):
        path = (docs / uri).resolve()
        if uri.startswith(OUTSIDE) and path.is_relative_to(docs):
            target = files.get_file_from_path(path.relative_to(docs).as_posix())
            if target is not None:
                anchor = urlsplit(link).fragment
                url = get_relative_url(target.url, page.file.url) + (f"#{anchor}" if anchor else "")
                markdown = markdown.replace(f"]({link}", f"]({url}")
    return markdown
