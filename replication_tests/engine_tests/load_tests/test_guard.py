"""A target that is production under any name is refused before anything is written."""

import pytest

from replication.engine.pg.connection import Address
from replication.engine.errors import ProductionTargetError
from replication.engine.load.guard import refuse_production_address, refuse_same_database, server_identity

from ...helpers import role_connection


def test_same_address_and_a_second_name_for_it_are_refused():
    prod = Address("127.0.0.1", 5432, "app")
    with pytest.raises(ProductionTargetError, match="dev: the target 127.0.0.1:5432/app is the production database"):
        refuse_production_address("dev", Address("127.0.0.1", 5432, "app"), prod)
    with pytest.raises(ProductionTargetError, match="localhost and 127.0.0.1 both resolve to 127.0.0.1") as caught:
        refuse_production_address("qa", Address("localhost", 5432, "app"), prod, "QA_DB_CONNECTION")
    assert "QA_DB_CONNECTION" in str(caught.value)


def test_another_database_or_port_on_the_same_host_is_fine():
    prod = Address("127.0.0.1", 5432, "app")
    refuse_production_address("dev", Address("127.0.0.1", 5432, "dev"), prod)
    refuse_production_address("dev", Address("localhost", 5433, "app"), prod)


def test_same_server_and_database_behind_another_address_is_refused(cluster):
    with role_connection(cluster, "prod") as prod, role_connection(cluster, "dev") as dev:
        prod_identity, dev_identity = server_identity(prod), server_identity(dev)
    assert prod_identity is not None and dev_identity is not None
    # Dev is another server: allowed. Prod reached through any other name: refused.
    refuse_same_database("dev", Address("10.1.2.3", 5432, "dev"), dev_identity, prod_identity)
    with pytest.raises(ProductionTargetError, match="production under another name") as caught:
        refuse_same_database("dev", Address("prod-alias.internal", 5432, "prod"), prod_identity, prod_identity)
    assert prod_identity[0] in str(caught.value)
