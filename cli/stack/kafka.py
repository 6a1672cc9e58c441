"""Apache Kafka in KRaft mode: one combined broker and controller from Maven Central jars."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from cli.stack import downloads
from cli.stack._proc import Process, StackError, wait_until
from stockledger.config import Settings

LOG4J = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Logger:
      - name: kafka
        level: INFO
      - name: org.apache.kafka
        level: WARN
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
"""


class Kafka:
    name = "kafka"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.dir = settings.home / "kafka"
        self.proc = Process("kafka", self.dir)

    @property
    def properties(self) -> str:
        port, ctl = self.settings.kafka_port, self.settings.kafka_port + 1
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{ctl}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={self.dir / 'data'}",
            f"num.partitions={self.settings.partitions}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=10",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "log.cleaner.backoff.ms=1000",
            "",
        ])

    def _java(self, lib: Path, *args: str, heap: str = "-Xmx128m") -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise StackError("kafka: java not found (Java 17+ is needed)")
        return [java, heap, "-cp", f"{lib}/*", *args]

    def start(self, progress: Callable[[str], None]) -> None:
        if self.proc.pid() is not None:
            return
        lib = downloads.kafka_lib(self.settings.cache_dir, progress)
        self.dir.mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        props.write_text(self.properties)
        (self.dir / "log4j2.yaml").write_text(LOG4J)
        if not (self.dir / "data" / "meta.properties").exists():
            progress("kafka: formatting storage")
            cluster_id = self._cluster_id(lib)
            rc = subprocess.call(self._java(lib, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
                                            "-c", str(props), "--ignore-formatted"),
                                 stdout=open(self.proc.logfile, "ab"), stderr=subprocess.STDOUT)
            if rc != 0:
                raise StackError(f"kafka: storage format failed; log: {self.proc.logfile}\n{self.proc.tail()}")
        self.proc.spawn(self._java(lib, f"-Dlog4j2.configurationFile={self.dir / 'log4j2.yaml'}",
                                   "-XX:+UseSerialGC", "kafka.Kafka", str(props), heap="-Xmx512m"))

    def _cluster_id(self, lib: Path) -> str:
        """Kept in a file so a re-format after a lost data dir keeps the cluster's identity."""
        idfile = self.dir / "cluster.id"
        if idfile.exists():
            return idfile.read_text().strip()
        out = subprocess.run(self._java(lib, "kafka.tools.StorageTool", "random-uuid"), capture_output=True,
                             text=True, check=True).stdout.split()
        idfile.write_text(out[-1] + "\n")
        return out[-1]

    def _metadata(self) -> bool:
        admin = AdminClient({"bootstrap.servers": self.settings.bootstrap_servers, "socket.timeout.ms": 2000,
                             "log_level": 0})
        md = admin.list_topics(timeout=2)
        return bool(md.brokers)

    def _transactions(self) -> bool:
        p = Producer({"bootstrap.servers": self.settings.bootstrap_servers,
                      "transactional.id": "stockledger-stack-probe", "transaction.timeout.ms": 10000, "log_level": 0})
        p.init_transactions(10)
        return True

    def wait(self, progress: Callable[[str], None]) -> None:
        wait_until(self._metadata, 120, "answering metadata", self.proc, progress)
        wait_until(self._transactions, 120, "initialising a transactional producer", self.proc, progress)

    def stop(self) -> bool:
        return self.proc.stop(timeout=60)

    def kill(self) -> bool:
        """SIGKILL the broker, as a crash does (fault tests); `start` and `wait` bring it back."""
        return self.proc.stop(timeout=30, sig=signal.SIGKILL)
