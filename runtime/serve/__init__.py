"""``srrun serve``: the upload / upscale / download page and its JSON API, as a Flask
application (:func:`create_app`) served by waitress. Needs the ``[serve]`` extra (flask,
waitress); imported only by ``srrun serve``."""

from .app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
