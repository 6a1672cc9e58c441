"""`stockledger stack kafka <tool> ...`: Kafka's own command-line tools (org.apache.kafka:kafka-tools at
the broker's version, from Maven Central), pointed at the configured cluster.

`--bootstrap-server` is added unless given, and on a secured cluster (Settings' SASL/SSL) a client
properties file with the same security is passed with the tool's config flag."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from cli.stack import downloads
from cli.stack._proc import StackError
from stockledger.config import Settings

PKG = "org.apache.kafka.tools"
# tool -> (main class, the flag that takes a client properties file)
TOOLS: dict[str, tuple[str, str]] = {
    "kafka-consumer-groups": (f"{PKG}.consumer.group.ConsumerGroupCommand", "--command-config"),
    "kafka-topics": (f"{PKG}.TopicCommand", "--command-config"),
    "kafka-get-offsets": (f"{PKG}.GetOffsetShell", "--command-config"),
    "kafka-console-consumer": (f"{PKG}.consumer.ConsoleConsumer", "--consumer.config"),
    "kafka-console-producer": (f"{PKG}.ConsoleProducer", "--producer.config"),
    "kafka-delete-records": (f"{PKG}.DeleteRecordsCommand", "--command-config"),
    "kafka-log-dirs": (f"{PKG}.LogDirsCommand", "--command-config"),
    "kafka-transactions": (f"{PKG}.TransactionsCommand", "--command-config"),
    "kafka-acls": (f"{PKG}.AclCommand", "--command-config"),
    "kafka-broker-api-versions": (f"{PKG}.BrokerApiVersionsCommand", "--command-config"),
    "kafka-metadata-quorum": (f"{PKG}.MetadataQuorumCommand", "--command-config"),
    "kafka-reassign-partitions": (f"{PKG}.reassign.ReassignPartitionsCommand", "--command-config"),
    "kafka-leader-election": (f"{PKG}.LeaderElectionCommand", "--admin.config"),
}

# Properties, not YAML: the tools' jars do not carry log4j's YAML parser.
LOG4J = """status = error
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = STDERR
"""

LOGIN_MODULES = {"PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
                 "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
                 "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule"}


def tool_name(name: str) -> str:
    """`consumer-groups` and `kafka-consumer-groups.sh` both mean `kafka-consumer-groups`."""
    name = name.removesuffix(".sh")
    return name if name.startswith("kafka-") else f"kafka-{name}"


def client_properties(settings: Settings) -> str:
    """The Java client's security settings matching Settings (empty on a plaintext cluster)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return ""
    lines = [f"security.protocol={protocol}"]
    if protocol.startswith("SASL_"):
        mechanism = settings.kafka_sasl_mechanism
        user = (settings.kafka_sasl_username or "").replace("\\", "\\\\").replace('"', '\\"')
        password = (settings.kafka_sasl_password or "").replace("\\", "\\\\").replace('"', '\\"')
        lines += [f"sasl.mechanism={mechanism}",
                  f'sasl.jaas.config={LOGIN_MODULES[mechanism]} required username="{user}" password="{password}";']
    if protocol.endswith("SSL") and settings.kafka_ssl_ca_file:
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={settings.kafka_ssl_ca_file}"]
    return "\n".join(lines) + "\n"


def command(settings: Settings, tool: str, args: list[str], lib: Path, workdir: Path,
            properties: Path | None) -> list[str]:
    """The java command line for `tool` with `args` (pure: for the tests too)."""
    if tool not in TOOLS:
        raise StackError(f"unknown Kafka tool {tool!r}; known: {', '.join(sorted(TOOLS))}")
    main, config_flag = TOOLS[tool]
    java = shutil.which("java")
    if java is None:
        raise StackError("kafka tools: java not found (Java 17+ is needed)")
    extra: list[str] = []
    if not any(a == "--bootstrap-server" or a.startswith("--bootstrap-server=") for a in args):
        extra += ["--bootstrap-server", settings.bootstrap_servers]
    if properties is not None and config_flag not in args:
        extra += [config_flag, str(properties)]
    return [java, "-Xmx256m", "-XX:+UseSerialGC", f"-Dlog4j2.configurationFile={workdir / 'tools-log4j2.properties'}",
            "-cp", f"{lib}/*", main, *extra, *args]


def run(settings: Settings, tool: str, args: list[str], progress: Callable[[str], None]) -> int:
    """Run the tool in the foreground; its exit code."""
    tool = tool_name(tool)
    if tool not in TOOLS:
        raise StackError(f"unknown Kafka tool {tool!r}; known: {', '.join(sorted(TOOLS))}")
    lib = downloads.kafka_tools_lib(settings.cache_dir, progress)
    workdir = settings.home / "kafka-tools"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tools-log4j2.properties").write_text(LOG4J)
    props_text = client_properties(settings)
    props: Path | None = None
    try:
        if props_text:
            fd, name = tempfile.mkstemp(prefix="client-", suffix=".properties", dir=workdir)  # 0600
            with os.fdopen(fd, "w") as f:
                f.write(props_text)
            props = Path(name)
        return subprocess.call(command(settings, tool, args, lib, workdir, props))
    finally:
        if props is not None:
            props.unlink(missing_ok=True)
