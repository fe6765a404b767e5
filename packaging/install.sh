#!/bin/sh
# Installs the logpost agent or collector on a host without dpkg: the
# binary, the systemd unit, a config (never overwriting an existing one),
# the logpost system user and the data directory.
#
#   packaging/install.sh agent|collector [--bin DIR] [--root DIR] [--no-systemd]
#
#   --bin DIR      where the built binaries are (default: target/release)
#   --root DIR     install under DIR instead of / (for tests and images)
#   --no-systemd   do not run systemctl (containers, images)
#
# Run as root. Upgrading is running it again with new binaries: the config
# and the data are kept; the service is restarted if it was running.
set -eu

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
what=${1:-}
[ -n "$what" ] || usage
shift
bin_dir="$here/../target/release"
root=""
systemd=1
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin_dir=$2; shift 2 ;;
        --root) root=$2; shift 2 ;;
        --no-systemd) systemd=0; shift ;;
        *) usage ;;
    esac
done

case "$what" in
    agent) binaries="logpost-agent" ;;
    collector) binaries="logpost-collector logpost" ;;
    *) usage ;;
esac
unit="logpost-$what.service"
config="$root/etc/logpost/$what.toml"

for b in $binaries; do
    [ -x "$bin_dir/$b" ] || { echo "install.sh: $bin_dir/$b is missing (cargo build --release first, or --bin DIR)" >&2; exit 1; }
done

# The service user, unless installing into an image root.
if [ -z "$root" ] && ! getent passwd logpost >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/logpost --no-create-home \
        --shell /usr/sbin/nologin logpost
fi
owner=""
[ -z "$root" ] && owner="-o logpost -g logpost"

install -d -m 0755 "$root/usr/bin" "$root/etc/systemd/system" "$root/etc/logpost"
for b in $binaries; do
    # Copy to a temporary name and rename: a running binary is replaced
    # atomically instead of being written in place ("text file busy").
    install -m 0755 "$bin_dir/$b" "$root/usr/bin/.$b.new"
    mv -f "$root/usr/bin/.$b.new" "$root/usr/bin/$b"
done
install -m 0644 "$here/systemd/$unit" "$root/etc/systemd/system/$unit"
# shellcheck disable=SC2086 # $owner is empty or two options
install -d -m 0750 $owner "$root/var/lib/logpost" "$root/var/lib/logpost/$what"

if [ -e "$config" ]; then
    echo "keeping existing $config (the packaged one is at $here/config/$what.toml)"
else
    install -m 0640 "$here/config/$what.toml" "$config"
    [ -z "$root" ] && chgrp logpost "$config"
    echo "installed $config"
fi

if [ "$systemd" = 1 ] && [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable "$unit" >/dev/null
    systemctl try-restart "$unit"
    echo "enabled $unit; start it with: systemctl start $unit"
fi
echo "logpost $what installed under ${root:-/}"
