"""The API's reads run under a statement timeout (`API_STATEMENT_TIMEOUT_MS`): a query that runs
(or waits on a lock) too long is cancelled by PostgreSQL and answered 503, instead of holding a
gunicorn worker until the worker's own timeout kills it.

Only the API's reads: the engines here are views of the process's engines (same pool), and the
timeout is set per transaction (`SET LOCAL`), so nothing else that shares the pool, such as the
workers' writes or migrations in a test's process, ever runs under it.
"""
from __future__ import annotations

from sqlalchemy import Connection, Engine, event


def with_statement_timeout(engine: Engine, milliseconds: int) -> Engine:
    """`engine`'s pool, every transaction begun through it under `statement_timeout`."""
    if milliseconds <= 0:
        return engine  # 0: no timeout, as PostgreSQL's own setting means
    timed = engine.execution_options()  # a view of the engine; its events are its own
    statement = f"SET LOCAL statement_timeout = {int(milliseconds)}"

    @event.listens_for(timed, "begin")
    def _set_timeout(connection: Connection) -> None:
        connection.exec_driver_sql(statement)

    return timed
