"""Database access: SQLAlchemy 2 async over asyncpg, one engine per service, Alembic migrations per service.

The edge owns the transaction: :func:`transaction` commits when the block (a request, an event) succeeds and rolls
back when it raises; service functions only add and flush.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from llmops.settings import PostgresSettings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every service's tables (and the shared outbox and inbox tables)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Database:
    """An engine and its session factory for one service's database."""

    def __init__(self, url: str, *, pool_size: int = 5, echo: bool = False) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url, pool_size=pool_size, pool_pre_ping=True, echo=echo)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


async def create_database(
    name: str, settings: PostgresSettings | None = None, *, owner: str | None = None, connect: tuple[str, ...] = ()
) -> str:
    """Create database ``name`` as the superuser if it does not exist; returns a superuser URL to it.

    For scratch databases (tests, benchmarks, the demo); service databases are created by ``llmops infra up``.
    ``owner`` makes a role its owner; ``connect`` names the only other roles allowed to connect.
    """
    settings = settings or PostgresSettings()
    admin = await asyncpg.connect(asyncpg_dsn(settings.superuser_url()))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
            if owner or connect:
                await admin.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{name}" FROM PUBLIC')
            for role in connect:
                await admin.execute(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"')
    finally:
        await admin.close()
    return settings.url(name, user=settings.superuser, password=settings.superuser_password.get_secret_value())


async def drop_database(name: str, settings: PostgresSettings | None = None) -> None:
    """Drop database ``name`` (closing its connections) if it exists."""
    settings = settings or PostgresSettings()
    admin = await asyncpg.connect(asyncpg_dsn(settings.superuser_url()))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy asyncpg URL as a plain asyncpg DSN (for hot paths that use asyncpg directly)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def alembic_config(script_location: Path, url: str) -> Config:
    """An Alembic config for a service's ``migrations/`` folder and database URL (async driver)."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(script_location: Path, url: str, revision: str = "head") -> None:
    """Apply a service's migrations up to ``revision`` (blocking; call from a thread in async code)."""
    command.upgrade(alembic_config(script_location, url), revision)


def run_migrations(target_metadata) -> None:
    """Body of every service's Alembic ``env.py``: run migrations offline (SQL) or online over an async engine.

    ``target_metadata`` is a MetaData or a list of them (a service's tables plus :data:`llmops.bus.BUS_METADATA`).
    """
    import asyncio

    from alembic import context
    from sqlalchemy import pool
    from sqlalchemy.ext.asyncio import async_engine_from_config

    config = context.config
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()

    async def online() -> None:
        engine = async_engine_from_config(
            config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
        )
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
        await engine.dispose()

    asyncio.run(online())
