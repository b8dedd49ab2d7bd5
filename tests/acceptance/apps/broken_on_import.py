"""An --app module whose import fails with something other than an ImportError."""

raise RuntimeError("settings.SECRET_KEY is not set")
