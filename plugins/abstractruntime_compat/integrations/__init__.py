"""Reference import paths of the integrations (``abstractruntime.integrations.<name>``); the code lives in plugins."""
