"""A Redis primary, its replicas and three Sentinels as real processes on loopback, for failover tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import redis

from harness.procs import free_port, start, stop, wait_until

MASTER = "samq-test"
DOWN_AFTER_MS = 1000  # a primary that does not answer for this long is down (subjectively, then by quorum)
FAILOVER_TIMEOUT_MS = 5000


class RedisGroup:
    """`redis-server` primary + replicas (`--replicaof`) + `redis-server --sentinel` x 3, nothing persisted."""

    def __init__(self, tmp: Path, replicas: int = 2, sentinels: int = 3) -> None:
        self.dir = tmp / "redis-group"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.servers: dict[int, subprocess.Popen] = {}  # port -> redis-server
        self.sentinels: dict[int, subprocess.Popen] = {}  # port -> redis-server --sentinel
        ports: list[int] = []
        while len(ports) < 1 + replicas + sentinels:  # free_port may name a port twice before anything binds it
            if (port := free_port()) not in ports:
                ports.append(port)
        self.first_primary, *self.replica_ports = ports[:1 + replicas]
        self.sentinel_ports = ports[1 + replicas:]
        self.killed: list[int] = []

    def start(self) -> RedisGroup:
        """Start every process and wait until each Sentinel knows the primary, all replicas and the other Sentinels
        (stopping them all if that fails)."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> RedisGroup:
        self._server(self.first_primary)
        for port in self.replica_ports:
            self._server(port, "--replicaof", "127.0.0.1", str(self.first_primary))
        wait_until(lambda: self.replicas_of(self.first_primary) == len(self.replica_ports), 20, "replicas in sync")
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"  # Sentinel rewrites its own file: one each
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                            f"sentinel monitor {MASTER} 127.0.0.1 {self.first_primary} 2\n"
                            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
                            f"sentinel parallel-syncs {MASTER} {len(self.replica_ports)}\n")
            self.sentinels[port] = start([_redis_server(), str(conf), "--sentinel"], {},
                                         self.dir / f"sentinel-{port}.log")

        def settled() -> bool:
            for port in self.sentinel_ports:
                state = redis.Redis(port=port, socket_timeout=1).sentinel_master(MASTER)
                if (state["num-slaves"] < len(self.replica_ports)
                        or state["num-other-sentinels"] < len(self.sentinel_ports) - 1):
                    return False
            return True

        wait_until(settled, 30, "the Sentinels to find the replicas and each other", interval_s=0.2)
        return self

    def env(self, db: int) -> dict[str, str]:
        """The SAMQ_* settings that point a stack at this group through its Sentinels."""
        return {"SAMQ_REDIS_URL": f"redis://127.0.0.1:{self.first_primary}/{db}",
                "SAMQ_REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
                "SAMQ_REDIS_SENTINEL_MASTER": MASTER}

    def primary(self) -> int:
        """The port the Sentinels name primary now."""
        for port in self.sentinel_ports:
            try:
                return int(redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(MASTER)[1])
            except (redis.RedisError, TypeError):
                continue
        raise RuntimeError("no Sentinel answers")

    def replicas_of(self, port: int) -> int:
        """How many replicas are connected to the server on `port` and online."""
        info = redis.Redis(port=port, socket_timeout=1).info("replication")
        return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                   and v.get("state") == "online")

    def kill(self, port: int) -> None:
        """SIGKILL one redis-server: whatever it had not sent its replicas is gone."""
        proc = self.servers.pop(port)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self.killed.append(port)

    def restart_killed(self) -> None:
        """Start the killed servers again, empty, and wait until the Sentinels have made them replicas of the
        primary and they are in sync with it."""
        for port in self.killed:
            self._server(port)
        self.killed.clear()
        primary = self.primary()
        wait_until(lambda: self.replicas_of(primary) == len(self.replica_ports), 60, "the restarted server to "
                   "become a replica", interval_s=0.2)

    def pause(self, port: int) -> None:
        """SIGSTOP one redis-server (it keeps its connections, answers nothing)."""
        os.killpg(self.servers[port].pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        """SIGCONT a paused redis-server."""
        os.killpg(self.servers[port].pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop every process of the group."""
        for proc in [*self.sentinels.values(), *self.servers.values()]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)  # a paused one would not see SIGTERM
            stop(proc)
        self.sentinels.clear()
        self.servers.clear()

    def _server(self, port: int, *args: str) -> None:
        folder = self.dir / f"redis-{port}"  # a replica's full sync writes an RDB file: one folder each
        folder.mkdir(exist_ok=True)
        self.servers[port] = start([_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                    "--appendonly", "no", "--dir", str(folder), "--maxmemory-policy", "noeviction",
                                    *args], {}, self.dir / f"redis-{port}.log")
        wait_until(lambda: redis.Redis(port=port, socket_timeout=1).ping(), 10, f"redis-server on {port}")


def _redis_server() -> str:
    path = shutil.which("redis-server")
    assert path, "redis-server is not installed"
    return path
