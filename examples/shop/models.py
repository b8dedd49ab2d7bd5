"""The shop's tables, as SQLAlchemy 2 models, and where its database is."""

from __future__ import annotations

import functools
import os
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Engine, ForeignKey, String, create_engine, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

DATABASE_URL_DEFAULT = "postgresql+psycopg://postgres@localhost:5432/shop"


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))

    orders: Mapped[list[Order]] = relationship(back_populates="user")


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    total_cents: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Set by the send_receipt job, so a job that runs twice sends one receipt.
    receipt_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(back_populates="orders")


def database_url() -> str:
    """$DATABASE_URL (``postgresql://`` or ``postgresql+psycopg://``), else a local default."""
    url = os.environ.get("DATABASE_URL") or DATABASE_URL_DEFAULT
    # pgq and SQLAlchemy both speak psycopg 3; a bare postgresql:// would mean psycopg2.
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@functools.cache
def engine() -> Engine:
    """The shop's engine, created on first use (the worker imports this module too)."""
    return create_engine(database_url())
