#!/usr/bin/env bash
# The CDK tests synthesize the stack through jsii, which runs Node.js. Node
# ships with the machine image; install it from Debian's packages where it
# does not.
set -euo pipefail
if ! command -v node >/dev/null 2>&1; then
	echo "ensure-node: installing Node.js" >&2
	apt-get update >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs >&2
fi
node --version >&2
