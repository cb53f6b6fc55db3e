"""The WebUI: server-rendered pages with a little plain JavaScript over the public API.

- :func:`webui_blueprint`: the pages (``/``, ``/sessions/<id>``) and their static assets, registered
  by :func:`harbor.api.app.create_app` when the daemon runs with ``webui=True`` (``ah webui``).
- :func:`harbor.webui.proxy.serve_proxy`: the same UI served in front of a remote daemon
  (``ah webui --remote-server URL``).
"""

from harbor.webui.pages import webui_blueprint

__all__ = ["webui_blueprint"]
