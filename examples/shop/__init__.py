"""A small shop: the example host application for pgq.

It owns its tables (users, orders) and its alembic migrations; pgq's migrations are a
second branch of the same alembic history, and its jobs are enqueued inside the same
transactions that write its orders. See README.md, section "Installing the schema".
"""
