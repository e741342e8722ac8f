#!/bin/sh
# Builds clients/java/build/regent-client.jar with the JDK alone (javac and jar, 17+): no build
# tool, no download. Then `./build.sh test` runs the unit tests, and with REGENT_BIN set the
# conformance scenario against a real cluster.
set -eu
cd "$(dirname "$0")"
rm -rf build
mkdir -p build/classes build/test-classes
javac --release 17 -Xlint:all -Werror -d build/classes $(find src -name '*.java')
jar --create --file build/regent-client.jar -C build/classes .
echo "built $(pwd)/build/regent-client.jar"
if [ "${1:-}" = test ]; then
    javac --release 17 -Xlint:all -Werror -cp build/classes -d build/test-classes $(find test -name '*.java')
    java -ea -cp build/classes:build/test-classes regent.Tests
    # The example compiles against the jar as a user's program would.
    javac --release 17 -Xlint:all -Werror -cp build/regent-client.jar -d build/example-classes examples/*.java
    if [ -n "${REGENT_BIN:-}" ]; then
        python3 ../conformance/run.py --regent "$REGENT_BIN" --name java -- \
            java -cp build/regent-client.jar regent.conformance.Runner
    else
        echo "REGENT_BIN is not set: the conformance scenario is skipped"
    fi
fi
