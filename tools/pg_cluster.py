"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb into a temporary folder, listen on
127.0.0.1 (and a unix socket in that folder) on a free port with trust authentication, stop and remove
it afterwards. Test and benchmark support only (docs/ARCHITECTURE.md: tools/ imports nothing of the app).

PostgreSQL refuses to run as root, so under root the server runs as the ``postgres`` user (which the
Debian package creates) through ``runuser``; any other user runs it as itself.

    with PgCluster.start() as cluster:
        url = cluster.create_database("scratch")   # postgresql+psycopg://postgres@127.0.0.1:PORT/scratch
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
SUPERUSER = "postgres"


def bin_dir() -> Optional[Path]:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    for folder in BIN_DIRS:
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """One running throwaway cluster. ``stop()``/``restart()`` let a test take the server away."""

    def __init__(self, folder: Path, port: int, binaries: Path):
        self.folder, self.port, self.bin = folder, port, binaries
        self.data = folder / "data"

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def start(cls, port: Optional[int] = None) -> "PgCluster":
        """initdb + start; raises RuntimeError with the reason when that is impossible here."""
        binaries = bin_dir()
        if binaries is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb/pg_ctl; apt-get install postgresql)")
        folder = Path(tempfile.mkdtemp(prefix="scalescope-pg-"))
        cluster = cls(folder, port or free_port(), binaries)
        try:
            if os.geteuid() == 0:
                shutil.chown(folder, SUPERUSER, SUPERUSER)
            cluster._run("initdb", "-D", str(cluster.data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
                         "--no-sync", "--no-instructions")
            cluster.restart()
        except Exception:
            cluster.remove()
            raise
        return cluster

    def restart(self) -> None:
        """Start the server (again, after :meth:`stop`), waiting until it accepts connections."""
        # fsync off: a throwaway cluster survives a killed server (the OS keeps the writes), not a lost machine.
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options,
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode="immediate"`` kills it as a crash would (no clean shutdown)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop the server if it runs, then delete the cluster's folder."""
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except RuntimeError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "PgCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    # ------------------------------------------------------------------ databases
    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name``; returns its SQLAlchemy URL."""
        admin(self.url(), f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.folder)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}"
                               + (f"\nserver log: {tail}" if tail else ""))


def admin(url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE) on the server ``url`` names."""
    import psycopg  # test support only: the app reaches psycopg through SQLAlchemy in db/

    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)


def with_database(url: str, database: str) -> str:
    """``url`` (a server's URL, any database) naming ``database`` instead."""
    head, _, tail = url.rpartition("/")
    query = ("?" + tail.split("?", 1)[1]) if "?" in tail else ""
    return f"{head}/{database}{query}"


if __name__ == "__main__":  # a quick manual check: start, print the URL, wait, remove
    with PgCluster.start() as c:
        print(c.url())
        input("running; press Enter to stop ")
