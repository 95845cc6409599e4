#!/usr/bin/env bash
# Fetches DynamoDB Local for the dynamo backend's tests. The only source is
# the npm package amplify-dynamodb-simulator, which ships the jar and its
# native libraries; nothing else is downloaded. Prints the directory holding
# DynamoDBLocal.jar as its last line.
set -euo pipefail

version=2.9.30
cache="${KEYWARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}"
dir="$cache/dynamodb-local-$version"

# Progress goes to stderr so the last stdout line stays the directory.
log() { echo "dynamodb-local: $*" >&2; }

apt_updated=
apt_install() {
	if [ -z "$apt_updated" ]; then
		apt-get update >&2
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2
}

if ! command -v java >/dev/null 2>&1; then
	log "installing a Java runtime"
	apt_install default-jre-headless
fi

if [ ! -f "$dir/DynamoDBLocal.jar" ]; then
	if ! command -v npm >/dev/null 2>&1; then
		log "installing npm"
		apt_install nodejs npm
	fi
	mkdir -p "$cache"
	tmp="$(mktemp -d "$cache/.dynamodb-local.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	log "fetching amplify-dynamodb-simulator@$version"
	(cd "$tmp" && npm pack --silent "amplify-dynamodb-simulator@$version" >&2)
	tar -xzf "$tmp"/amplify-dynamodb-simulator-*.tgz -C "$tmp" package/emulator
	if [ ! -f "$tmp/package/emulator/DynamoDBLocal.jar" ]; then
		log "DynamoDBLocal.jar not found in the package"
		exit 1
	fi
	# A concurrent run may have won the race; keep its copy.
	if ! mv -T "$tmp/package/emulator" "$dir" 2>/dev/null && [ ! -f "$dir/DynamoDBLocal.jar" ]; then
		log "cannot move DynamoDB Local into $dir"
		exit 1
	fi
fi

echo "$dir"
