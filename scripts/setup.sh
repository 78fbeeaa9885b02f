#!/usr/bin/env bash
# Shared setup for run.sh, test.sh and bench.sh: installs what a fresh Debian 12 machine of this
# kind lacks, then builds. Idempotent and quick when everything is already there.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "Airlock makes namespaces, mounts and cgroups: run it as root." >&2
  exit 1
fi

APT_PACKAGES=(debootstrap libseccomp-dev cmake gcc make iproute2 nftables python3 ca-certificates curl)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v dotnet >/dev/null 2>&1; then
  echo "the .NET SDK 10 is required (dotnet on PATH)" >&2
  exit 1
fi

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
CONFIGURATION="${CONFIGURATION:-Release}"
echo "==> building ($CONFIGURATION)"
dotnet build Airlock.slnx -c "$CONFIGURATION" -v quiet -nologo -clp:ErrorsOnly
SERVER_DLL="$PWD/src/Airlock.Server/bin/$CONFIGURATION/net10.0/airlock-server.dll"
export SERVER_DLL
