"""The datasets service: collect, validate, clean, version and trace the data that trains and tests models."""
