"""Which database this is, as its server says (not as a URL spells it): the stack's identity on shared
servers (docvl/broker/stack.py). The same database reached under two host names has one identity; a
database dropped and made again under the same name on the same server keeps it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from docvl.db.database import Database

# pg_control_system() is open to every role on stock Postgres; where a managed one closes it, the server's
# address and the database's oid stand in for its system identifier.
_SYSTEM = text("SELECT current_database(), (SELECT system_identifier FROM pg_control_system())::text")
_FALLBACK = text(
    "SELECT current_database(), concat(inet_server_addr(), ':', inet_server_port(), '#', "
    "(SELECT oid FROM pg_database WHERE datname = current_database()))"
)


@dataclass(frozen=True)
class DatabaseIdentity:
    name: str  # the database's name
    server: str  # the server's system identifier (or its stand-in)

    @property
    def key(self) -> str:
        return f"{self.server}/{self.name}"


def identity_of(database: Database) -> DatabaseIdentity:
    with database.engine.connect() as connection:
        try:
            name, server = connection.execute(_SYSTEM).one()
        except DBAPIError:
            connection.rollback()
            name, server = connection.execute(_FALLBACK).one()
    return DatabaseIdentity(str(name), str(server))
