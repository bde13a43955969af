"""Driving Ray: joining or starting it (``join``), the drivers' checks before it starts, quiet libraries."""
