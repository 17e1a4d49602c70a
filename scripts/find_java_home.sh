#!/usr/bin/env bash
# Print the JDK folder CellProfiler's Java bridge should use, or nothing (exit 1) when none exists.
# Order: $JAVA_HOME if it holds javac, the javac on PATH, then the JDKs under $JVM_SEARCH_DIR.
set -u
if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/javac" ]; then echo "$JAVA_HOME"; exit 0; fi
javac_path="$(command -v javac 2>/dev/null || true)"
if [ -n "$javac_path" ]; then dirname "$(dirname "$(readlink -f "$javac_path")")"; exit 0; fi
for candidate in "${JVM_SEARCH_DIR:-/usr/lib/jvm}"/*; do
    if [ -x "$candidate/bin/javac" ]; then echo "$candidate"; exit 0; fi
done
exit 1
