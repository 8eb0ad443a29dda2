"""Daily production PostgreSQL snapshot fanned out to Dev, Staging and QA, as a Dagster code location."""

from .definitions import defs

__all__ = ["defs"]
