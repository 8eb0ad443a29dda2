"""Daily production PostgreSQL snapshot fanned out to Dev, Staging and QA, as a Dagster code location.

`defs` is loaded on first access (PEP 562), so `replication.engine` can be imported, by a script
or a benchmark worker, without importing Dagster or reading replication.yaml.
"""

__all__ = ["defs"]


def __getattr__(name: str):
    if name == "defs":
        from .definitions import defs

        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # Dagster finds the Definitions object by listing the module's members.
    return sorted({*globals(), "defs"})
