from .environments import ENVIRONMENT_ASSETS, build_environment_asset
from .snapshot import build_prod_snapshot, prod_snapshot

__all__ = ["ENVIRONMENT_ASSETS", "build_environment_asset", "build_prod_snapshot", "prod_snapshot"]
