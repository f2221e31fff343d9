"""An offline GraphiQL page, served from assets vendored through PyPI.

Strawberry's built-in GraphiQL page loads React and GraphiQL from a CDN, so on a machine
without internet access (air-gapped sites, CI, a laptop on a plane) it renders a blank
page. We instead serve the bundles shipped by the PyPI package
``graphene-django-graphiql-static``: despite its name it has no dependencies (no Django,
no graphene; we never import its Django views or templates), it is pinned in
``pyproject.toml`` like any other dependency, and it contains exactly the files a browser
needs (GraphiQL 2.x built as UMD for React 17, its CSS with inlined fonts, React,
ReactDOM). That avoids committing ~1.5 MB of minified JavaScript to this repository and a
node toolchain to produce it.

The bundle is GraphiQL 2.x (it still has ``toolbar.additionalContent``, removed in 3.0;
the same React 17.0.2, graphql-ws and explorer files graphene-django pins next to
GraphiQL 2.4.7). API used here accordingly: ``GraphiQL.createFetcher({url,
subscriptionUrl})`` and the props ``defaultQuery``, ``defaultHeaders`` (a JSON string),
``isHeadersEditorEnabled``, ``shouldPersistHeaders``, ``defaultEditorToolsVisibility``,
rendered with React 17's ``ReactDOM.render``. ``graphiql.min.js`` already bundles a
graphql-ws client, which ``createFetcher`` uses for ``subscriptionUrl`` (protocol
``graphql-transport-ws``) and which sends the headers editor's contents as the
``connection_init`` payload, so the package's separate ``graphql-ws.min.js`` is not loaded.

The Explorer (click-to-build queries) is ``@graphiql/plugin-explorer`` from the same
package (``graphiql-plugin-explorer.umd.js`` and its ``style.css``). Its UMD build takes
``GraphiQL.React`` and ``GraphiQL.GraphQL`` from the GraphiQL bundle, and
``useExplorerPlugin`` is a React hook, so the page renders GraphiQL from a small function
component that keeps the query in state, shared by the editor and the Explorer.

Usage::

    Mount(STATIC_PATH, app=static_app())
    HTMLResponse(graphiql_html(headers={"Authorization": f"Bearer {dev_key}"}))
"""

from __future__ import annotations

import importlib
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.staticfiles import StaticFiles

__all__ = ["STATIC_PATH", "graphiql_html", "static_app"]

STATIC_PATH = "/graphiql-static"
"""URL prefix under which :func:`static_app` is mounted; the page loads assets only from it."""

_ASSET_PACKAGE = "graphene_django_graphiql_static"

# The files the page loads, in order (relative to the package's static directory).
_STYLESHEETS = ("graphiql.min.css", "style.css")  # style.css: the Explorer's
_SCRIPTS = ("react.production.min.js", "react-dom.production.min.js", "graphiql.min.js",
            "graphiql-plugin-explorer.umd.js")

DEFAULT_QUERY = """\
# IoTSphere GraphQL API
#
# Run: Ctrl-Enter (Cmd-Enter on a Mac).
# Schema: the Docs button on the left; click-to-build: the Explorer.
# API key: the Headers panel below.

query Devices {
  devices(first: 10) {
    totalCount
    edges {
      node {
        id
        name
        status
        shadow {
          reported
        }
      }
    }
  }
}
"""


@lru_cache(maxsize=1)
def _static_dir() -> Path:
    """The package's directory of bundles, ``<package>/static/graphene_django_graphiql_static``."""
    root: Any = resources.files(_ASSET_PACKAGE)
    if not isinstance(root, os.PathLike):  # not a plain directory: fall back to the module file
        root = Path(importlib.import_module(_ASSET_PACKAGE).__file__ or "").parent
    directory = Path(os.fspath(root)) / "static" / _ASSET_PACKAGE
    missing = [name for name in (*_STYLESHEETS, *_SCRIPTS) if not (directory / name).is_file()]
    if missing:
        raise RuntimeError(
            f"GraphiQL assets missing from {directory}: {', '.join(missing)} "
            "(is graphene-django-graphiql-static==0.8 installed?)"
        )
    return directory


def static_app() -> StaticFiles:
    """An ASGI app serving the vendored GraphiQL assets; mount it at :data:`STATIC_PATH`."""
    return StaticFiles(directory=_static_dir())


def script_json(value: object) -> str:
    """JSON that is safe inside an HTML ``<script>`` element (and valid JavaScript).

    ``<``, ``>`` and ``&`` become ``\\u003c`` etc., so no value can close the element
    (``</script>``) or open a comment (``<!--``); U+2028/U+2029 are escaped for old engines.
    """
    return (
        json.dumps(value, ensure_ascii=False)
        .replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def graphiql_html(
    *,
    endpoint: str = "/graphql",
    headers: dict[str, str] | None = None,
    subscriptions: bool = True,
) -> str:
    """A complete, self-contained GraphiQL page that needs no internet access.

    ``endpoint`` is the GraphQL URL (relative to the page, or absolute). With
    ``subscriptions`` the page opens subscriptions over ``graphql-transport-ws`` on the
    same URL, ``ws://`` or ``wss://`` following the page's scheme. ``headers`` prefill the
    headers editor (e.g. the dev key's ``Authorization``); they are not persisted in the
    browser's storage.
    """
    config = {
        "endpoint": endpoint,
        "subscriptions": subscriptions,
        "defaultQuery": DEFAULT_QUERY,
        "defaultHeaders": json.dumps(headers, indent=2) if headers else None,
    }
    stylesheets = "\n".join(
        f'  <link rel="stylesheet" href="{STATIC_PATH}/{name}" />' for name in _STYLESHEETS
    )
    scripts = "\n".join(f'  <script src="{STATIC_PATH}/{name}"></script>' for name in _SCRIPTS)
    return _TEMPLATE.format(
        stylesheets=stylesheets,
        scripts=scripts,
        config=script_json(config),
        static_path=STATIC_PATH,
    )


_TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <meta name="viewport" content="width=device-width, initial-scale=1" />
  <meta name="robots" content="noindex" />
  <title>IoTSphere GraphiQL</title>
  <link rel="icon" href="data:," />
  <style>
    html, body, #graphiql {{ height: 100%; margin: 0; width: 100%; overflow: hidden; }}
    #graphiql > .graphiql-loading {{ font: 16px sans-serif; padding: 2em; }}
  </style>
{stylesheets}
{scripts}
</head>
<body>
  <div id="graphiql"><p class="graphiql-loading">Loading GraphiQL&hellip;</p></div>
  <script>
    (function () {{
      "use strict";
      var config = {config};
      var root = document.getElementById("graphiql");
      if (!window.React || !window.ReactDOM || !window.GraphiQL) {{
        root.firstChild.textContent =
          "GraphiQL could not load its scripts from {static_path}/ (see the browser console).";
        return;
      }}
      var url = new URL(config.endpoint, window.location.href);
      var fetcherOptions = {{ url: url.href }};
      if (config.subscriptions) {{
        var wsUrl = new URL(url.href);
        wsUrl.protocol = url.protocol === "https:" ? "wss:" : "ws:";
        fetcherOptions.subscriptionUrl = wsUrl.href;
      }}
      var fetcher = GraphiQL.createFetcher(fetcherOptions);
      var explorer = window.GraphiQLPluginExplorer;
      function App() {{
        var state = React.useState(config.defaultQuery);
        var query = state[0], setQuery = state[1];
        var props = {{
          fetcher: fetcher,
          query: query,
          onEditQuery: setQuery,
          isHeadersEditorEnabled: true,
          shouldPersistHeaders: false
        }};
        if (explorer) {{
          props.plugins = [explorer.useExplorerPlugin({{ query: query, onEdit: setQuery }})];
        }}
        if (config.defaultHeaders) {{
          props.defaultHeaders = config.defaultHeaders;
          props.defaultEditorToolsVisibility = "headers";
        }}
        return React.createElement(GraphiQL, props);
      }}
      ReactDOM.render(React.createElement(App), root);
    }})();
  </script>
</body>
</html>
"""
