#!/usr/bin/env bash
# The console's end-to-end tests drive headless Chromium (chromedp). Install
# Debian's chromium package where it is missing, and print the browser's
# path last, for KEYWARD_CHROMIUM.
set -euo pipefail
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $browser ]]; then
	echo "ensure-chromium: installing Debian's chromium" >&2
	apt-get update >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2
	browser=$(command -v chromium)
fi
"$browser" --version >&2
echo "$browser"
