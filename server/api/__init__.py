"""Kernel HTTP pieces every plane uses: bearer auth (``auth``), JSON body reading (``body``) and
OpenAPI assembly (``openapi``). They import no plane."""
