from .environments import build_environment_asset, build_environment_assets
from .snapshot import prod_snapshot

__all__ = ["build_environment_asset", "build_environment_assets", "prod_snapshot"]
