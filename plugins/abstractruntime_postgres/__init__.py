"""Builtin plugin ``postgres``: a PostgreSQL store for many workers on many machines (psycopg 3).

URL: ``postgresql://user:password@host:5432/dbname?sslmode=require`` (``postgres://`` too, or a bare ``postgres``
for the libpq defaults and ``PG*`` environment variables). The URL is passed to libpq as it is, minus this
plugin's own options; every libpq parameter (``sslmode``, ``application_name``, ``connect_timeout``,
``options``, ...) passes through, in the URL or in ``[abstractruntime.store_options]``.

Options (URL query or ``[abstractruntime.store_options]``):

``pool_min`` / ``pool_max``  connection pool size (default 1 / 8)
``pool_timeout``            seconds an operation waits for a free pooled connection (default 30)
``schema``                  PostgreSQL schema holding the tables (default ``abstractruntime``)
``notify``                  true/false: ``NOTIFY`` workers when a run becomes runnable (default true)

Needs the ``postgres`` extra (``pip install 'abstractruntime[postgres]'``); psycopg is imported only when the store
is opened. See ``docs/postgres.md`` for the schema, leases and fencing, and running many workers
(:class:`~abstractruntime_postgres.worker.PostgresWorker`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from attrs import field, fields, frozen, validators

from abstractruntime import StoreDescriptor, StoreLocation, hookimpl
from abstractruntime.errors import ConfigurationError, ValidationError
from abstractruntime_pluginkit import structure_options

from .errors import CommitOutcomeUnknownError, LeaseLostError, RunLeasedError, StoreUnavailableError

#: libpq connection parameters (used when libpq cannot be asked, e.g. to report an error before importing psycopg)
_LIBPQ_FALLBACK = frozenset({
    "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "channel_binding", "connect_timeout",
    "client_encoding", "options", "application_name", "fallback_application_name", "keepalives",
    "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout", "replication", "gssencmode",
    "sslmode", "requiressl", "sslcompression", "sslcert", "sslkey", "sslpassword", "sslrootcert", "sslcrl",
    "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version", "ssl_max_protocol_version", "krbsrvname",
    "gsslib", "service", "target_session_attrs", "load_balance_hosts", "sslcertmode", "require_auth",
    "gssdelegation", "sslnegotiation", "scram_client_key", "scram_server_key", "oauth_issuer", "oauth_client_id",
    "oauth_client_secret", "oauth_scope", "max_protocol_version", "min_protocol_version",
})


def _libpq_keywords() -> frozenset:
    try:
        from psycopg import pq

        return frozenset(d.keyword.decode() for d in pq.Conninfo.get_defaults()) | _LIBPQ_FALLBACK
    except Exception:  # pragma: no cover - psycopg missing: the factory reports it
        return _LIBPQ_FALLBACK


def _check_pool_timeout(_instance: Any, _attribute: Any, value: float) -> None:
    if not value > 0:
        raise ValidationError(f"'pool_timeout' must be a positive number of seconds, got {value!r}")


@frozen
class PostgresOptions:
    """The postgres store's own options (libpq connection parameters pass through to the connection string)."""

    pool_min: int = field(default=1, validator=validators.ge(0))
    pool_max: int = field(default=8, validator=validators.ge(1))
    pool_timeout: float = field(default=30.0, validator=_check_pool_timeout)
    schema: str = "abstractruntime"
    notify: bool = True
    #: store checkpoint and ledger JSON deflated (about half the WAL per step); false keeps new rows as JSON bytes
    compress: bool = True

    def __attrs_post_init__(self) -> None:
        if self.pool_min > self.pool_max:
            raise ValidationError(f"'pool_min' ({self.pool_min}) is larger than 'pool_max' ({self.pool_max})")


_OPTIONS = frozenset(f.name for f in fields(PostgresOptions))


def parse_location(location: StoreLocation, libpq: frozenset = _LIBPQ_FALLBACK) -> Tuple[str, Dict[str, Any]]:
    """Split a store location into the libpq DSN (our options removed) and our keyword arguments.

    Options that are neither ours nor libpq parameters raise :class:`ConfigurationError`. libpq parameters given
    only in ``store_options`` are added to the DSN.
    """
    url = location.url.strip()
    query_keys: set = set()
    if "://" in url:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query_keys = {k for k, _ in pairs}
        kept = [(k, v) for k, v in pairs if k not in _OPTIONS]
        dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept, quote_via=quote), parts.fragment))
    else:
        dsn = ""  # bare "postgres": libpq defaults and PG* environment variables
    unknown = sorted(k for k in location.options if k not in _OPTIONS and k not in libpq)
    if unknown:
        raise ConfigurationError(
            f"Unknown postgres store option(s) {unknown} in {_redact(location.url)!r}; this store's options: "
            f"{sorted(_OPTIONS)}; libpq connection parameters (sslmode, application_name, ...) pass through")
    extra = {k: v for k, v in location.options.items() if k in libpq and k not in _OPTIONS and k not in query_keys}
    if extra:
        from psycopg.conninfo import make_conninfo

        dsn = make_conninfo(dsn, **{k: str(v) for k, v in extra.items()})
    ours = {k: v for k, v in location.options.items() if k in _OPTIONS}
    options = structure_options(PostgresOptions, ours, where="postgres store options")
    from .schema import check_schema_name

    check_schema_name(options.schema)
    kwargs: Dict[str, Any] = {"min_size": options.pool_min, "max_size": options.pool_max, "schema": options.schema,
                              "notify": options.notify, "pool_timeout": options.pool_timeout,
                              "compress": options.compress}
    return dsn, kwargs


def _redact(url: str) -> str:
    """The URL without its password."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def open_postgres(location: StoreLocation):
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            f"The postgres store needs psycopg 3 and psycopg_pool ({exc}); install them with "
            f"pip install 'abstractruntime[postgres]'") from None
    dsn, kwargs = parse_location(location, _libpq_keywords())
    from .store import PostgresBackend

    return PostgresBackend(dsn, read_only=location.read_only, **kwargs)


@hookimpl
def abstractruntime_register_stores() -> List[StoreDescriptor]:
    return [
        StoreDescriptor(
            name="postgres",
            factory=open_postgres,
            schemes=("postgresql", "postgres"),
            description="PostgreSQL (psycopg 3): many workers on many machines, leases with fencing. "
                        "URL: postgresql://user@host:5432/dbname",
        )
    ]


def __getattr__(name: str) -> Any:  # the store classes without importing psycopg at plugin discovery
    if name in {"PostgresBackend", "PostgresRunStore", "PostgresLedgerStore", "Fence"}:
        from . import store

        return getattr(store, name)
    if name in {"PostgresWorker", "WorkerStats"}:
        from . import worker

        return getattr(worker, name)
    if name in {"PostgresArtifactStore", "PostgresSnapshotStore"}:
        from . import blobs

        return getattr(blobs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LeaseLostError", "RunLeasedError", "StoreUnavailableError", "CommitOutcomeUnknownError", "open_postgres",
           "parse_location", "PostgresBackend", "PostgresWorker"]


@hookimpl
def abstractruntime_register_cli_commands() -> List[Any]:
    from abstractruntime.descriptors import CliCommandDescriptor

    from . import cli

    return [CliCommandDescriptor("worker", "drive runs claimed from a PostgreSQL store (leases, fencing) until "
                                 "SIGTERM", cli.configure, cli.run)]
