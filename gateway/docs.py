"""/docs: Swagger UI served from the assets installed with the project (swagger-ui-bundle-v2).

The page references nothing outside the gateway, so it works on an offline network;
a Content-Security-Policy keeps it that way (scripts, styles and fetches from
'self' only, no inline script).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path

from gateway.errors import RouteNotFound

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

DOCS_HTML = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>社会保险服务 API / Social security API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body>
</html>
"""

INIT_JS = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: true,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""


def docs_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    root = Path(str(swagger_ui_path))

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_HTML, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})

    @router.get("/docs/assets/init.js")
    async def init_js() -> Response:
        return Response(INIT_JS, media_type="text/javascript; charset=utf-8", headers={"Cache-Control": "no-cache"})

    @router.get("/docs/assets/{name}")
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise RouteNotFound()
        return FileResponse(root / name, media_type=ASSETS[name], headers={"Cache-Control": "public, max-age=86400"})

    return router
