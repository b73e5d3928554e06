"""The admin plane: the REST API under /api/v1 and the web app, both on ``service``."""
