"""Where an environment's definitions differ from production's, as recorded in the snapshot."""

from __future__ import annotations

from dataclasses import dataclass

from ..pg.catalog import TableRef
from .definitions import Definitions, TableDefinition


@dataclass(frozen=True)
class Difference:
    kind: str  # missing_table, extra_table, missing_column, extra_column, type, nullability, missing_index,
    # different_index, missing_constraint, different_constraint, missing_partition, missing_enum_value
    table: str  # schema.table (schema.type for an enum)
    name: str = ""  # the column, index, constraint, partition or enum value
    production: str = ""
    environment: str = ""

    def describe(self) -> str:
        where = f"{self.table}.{self.name}" if self.name and "column" in self.kind else self.table
        return {
            "missing_table": f"table {self.table} is missing",
            "extra_table": f"table {self.table} is not in production",
            "missing_column": f"column {where} ({self.production}) is missing",
            "extra_column": f"column {where} is not in production",
            "type": f"column {self.table}.{self.name} is {self.environment} here and {self.production} in production",
            "nullability": f"column {self.table}.{self.name} is {self.environment} here and {self.production} "
                           "in production",
            "missing_index": f"index {self.name} on {self.table} is missing",
            "different_index": f"index {self.name} on {self.table} differs ({self.environment}; production: "
                               f"{self.production})",
            "missing_constraint": f"constraint {self.name} on {self.table} is missing ({self.production})",
            "different_constraint": f"constraint {self.name} on {self.table} differs ({self.environment}; "
                                    f"production: {self.production})",
            "missing_partition": f"partition {self.name} of {self.table} is missing ({self.production})",
            "missing_enum_value": f"enum {self.table} lacks the value {self.name!r}",
        }[self.kind]

    def as_row(self) -> dict:
        return {"difference": self.kind, "table": self.table, "name": self.name, "production": self.production,
                "environment": self.environment}


def compare(production: Definitions, environment: Definitions, extra_tables: list[TableRef] = ()) -> list[Difference]:
    """Every difference, table by table: what production has that the environment lacks or has
    otherwise, and the columns and tables the environment has that production does not. Indexes and
    constraints the environment adds of its own are not drift."""
    found: list[Difference] = []
    for wanted in production.tables:
        have = environment.table(wanted.ref)
        if have is None:
            found.append(Difference("missing_table", wanted.key))
            continue
        found += _table_differences(wanted, have)
    found += [Difference("extra_table", ref.key) for ref in extra_tables]
    for name, labels in production.enums.items():
        present = environment.enums.get(name)
        if present is None:
            continue  # a missing type shows as a column of another type
        found += [Difference("missing_enum_value", name, label) for label in labels if label not in present]
    return found


def _table_differences(wanted: TableDefinition, have: TableDefinition) -> list[Difference]:
    found: list[Difference] = []
    key = wanted.key
    for column in wanted.columns:
        other = have.column(column.name)
        if other is None:
            found.append(Difference("missing_column", key, column.name, column.type))
            continue
        if other.type != column.type:
            found.append(Difference("type", key, column.name, column.type, other.type))
        if other.not_null != column.not_null:
            found.append(Difference("nullability", key, column.name, _nullability(column.not_null),
                                    _nullability(other.not_null)))
    names = {c.name for c in wanted.columns}
    found += [Difference("extra_column", key, c.name, "", c.type) for c in have.columns if c.name not in names]
    indexes = {i.name: i for i in have.indexes}
    for index in wanted.indexes:
        if index.constraint:
            continue  # compared as its constraint
        other = indexes.get(index.name)
        if other is None:
            found.append(Difference("missing_index", key, index.name, index.definition))
        elif other.definition != index.definition:
            found.append(Difference("different_index", key, index.name, index.definition, other.definition))
    constraints = {c.name: c for c in have.constraints}
    for constraint in wanted.constraints:
        other = constraints.get(constraint.name)
        if other is None:
            found.append(Difference("missing_constraint", key, constraint.name, constraint.definition))
        elif other.definition != constraint.definition:
            found.append(Difference("different_constraint", key, constraint.name, constraint.definition,
                                    other.definition))
    partitions = {p.ref for p in have.partitions}
    found += [Difference("missing_partition", key, p.ref.key, p.bound) for p in wanted.partitions
              if p.ref not in partitions]
    return found


def _nullability(not_null: bool) -> str:
    return "NOT NULL" if not_null else "nullable"
