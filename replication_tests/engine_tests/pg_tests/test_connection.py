import pytest

from replication.engine.pg.connection import parse_address
from replication.engine.errors import ConfigurationError


def test_host_port_database():
    address = parse_address("db.internal:6543/app", "PROD_DB_CONNECTION")
    assert (address.host, address.port, address.dbname, address.params) == ("db.internal", 6543, "app", {})


def test_port_defaults_to_5432():
    assert parse_address("db/app", "X").port == 5432


def test_uri_with_parameters():
    address = parse_address("postgresql://db.internal:6543/app?sslmode=require&connect_timeout=3", "X")
    assert (address.host, address.port, address.dbname) == ("db.internal", 6543, "app")
    assert address.params == {"sslmode": "require", "connect_timeout": "3"}


@pytest.mark.parametrize(
    "value",
    ["postgresql://admin:hunter2@db:5432/app", "postgresql://db:5432/app?password=hunter2&user=admin"],
)
def test_credentials_in_the_address_are_refused_without_echoing_them(value):
    with pytest.raises(ConfigurationError, match="PROD_DB_CONNECTION") as info:
        parse_address(value, "PROD_DB_CONNECTION")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("value", ["", "just-a-host", "db:notaport/app", "mysql://db/app"])
def test_malformed_addresses_name_the_variable(value):
    with pytest.raises(ConfigurationError, match="DEV_DB_CONNECTION"):
        parse_address(value, "DEV_DB_CONNECTION")
