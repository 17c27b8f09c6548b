"""importlib's side: the registry of pins and trees, the finders, the verifying loader."""
